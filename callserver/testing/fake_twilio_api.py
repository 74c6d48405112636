"""A local fake of Twilio's Calls API and of the phone network behind it, for the Twilio dialer.

``POST /2010-04-01/Accounts/{sid}/Calls.json`` (HTTP basic auth with the account SID and
auth token) validates the order (E.164 ``To``/``From``, ``Url``, ``StatusCallback``) and
answers 201 with a ``CA...`` sid, then plays the callee as Twilio would report it:

- signed status callbacks (``X-Twilio-Signature``, computed by the ``twilio`` package's
  ``RequestValidator``) for ``initiated``, ``ringing``, then ``busy``/``no-answer``/``failed``
  or, once answered, ``completed``;
- on answer, a signed request to ``Url`` (with ``AnsweredBy`` under machine detection), whose
  TwiML is obeyed: ``<Hangup/>`` ends the call; ``<Dial><Sip>`` bridges to the fake OpenAI,
  i.e. rings a call there and delivers OpenAI's signed incoming-call webhook with the SIP
  headers the URI carries (that is how the correlation header reaches callserver);
- the bridged call ends when the callee hangs up (scripted) or OpenAI's side is hung up.

``GET`` / ``POST .../Calls/{sid}.json`` read and cancel (``Status=canceled|completed``).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import re
import time
import uuid
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from callserver.testing import server_events
from callserver.testing.fake_server import InLoopServer
from callserver.testing.harness import TEST_WEBHOOK_SECRET
from callserver.testing.webhook_sender import incoming_call_event, live_incoming_event, send_webhook

if TYPE_CHECKING:
    from callserver.testing.fake_openai import FakeOpenAI

__all__ = ["FakeTwilio", "FakeTwilioCall", "TwilioCallee"]

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
CallOutcome = Literal["answer", "machine", "busy", "no-answer", "failed"]
VOICEMAIL_GREETING = "Hi, you've reached Ana. Please leave a message after the tone."


def new_sid(prefix: str = "CA") -> str:
    return prefix + uuid.uuid4().hex


@dataclasses.dataclass
class TwilioCallee:
    """How the fake callee of one number behaves."""

    outcome: CallOutcome = "answer"
    ring_s: float = 0.05
    says: str | None = "Hello?"
    hangs_up_after: float | None = None
    """Seconds after the bridge until the callee hangs up (None: until OpenAI's side ends)."""


@dataclasses.dataclass
class FakeTwilioCall:
    sid: str
    to: str
    from_: str
    url: str
    status_url: str | None
    events: tuple[str, ...]
    machine_detection: str | None
    timeout_s: int
    status: str = "queued"
    answered_by: str | None = None
    twiml: str | None = None
    bridged: tuple[str, str] | None = None
    """(engine, OpenAI call id) of the leg bridged to OpenAI."""
    callbacks: list[str] = dataclasses.field(default_factory=list)
    created_at: float = dataclasses.field(default_factory=time.monotonic)


class FakeTwilio:
    """See the module docstring. ``engines``: which incoming-call webhooks OpenAI sends for
    a bridged leg (``("realtime",)``, ``("live",)``, or both as for a dual subscription)."""

    def __init__(
        self,
        *,
        account_sid: str = "AC" + "0" * 32,
        auth_token: str = "twilio-test-token",
        openai: FakeOpenAI | None = None,
        webhook_url: str | None = None,
        webhook_secret: str = TEST_WEBHOOK_SECRET,
        engines: tuple[str, ...] = ("realtime",),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.openai = openai
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.engines = engines
        self.callees: dict[str, TwilioCallee] = {}
        self.default = TwilioCallee()
        self.calls: dict[str, FakeTwilioCall] = {}
        self.creates: list[dict[str, Any]] = []
        self.cancels: list[tuple[str, str]] = []
        self.failures: list[tuple[int, bool]] = []
        """Scripted create answers: (status, places the call anyway)."""
        self.extra_bridge_headers: list[tuple[str, str]] = []
        self._validator = RequestValidator(auth_token)
        self._tasks: set[asyncio.Task[None]] = set()
        self._http = httpx.AsyncClient(timeout=10)
        prefix = "/2010-04-01/Accounts/{account}"
        self.app = Starlette(
            routes=[
                Route(prefix + "/Calls.json", self._create, methods=["POST"]),
                Route(prefix + "/Calls/{sid}.json", self._call, methods=["GET", "POST"]),
            ]
        )
        self._server = InLoopServer(self.app, host, port)

    @property
    def base_url(self) -> str:
        """What ``CALLSERVER_TWILIO_API_URL`` points at."""
        return f"http://{self._server.host}:{self._server.port}"

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._http.aclose()
        await self._server.stop()

    async def __aenter__(self) -> FakeTwilio:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def script(self, number: str, **kwargs: Any) -> TwilioCallee:
        self.callees[number] = TwilioCallee(**kwargs)
        return self.callees[number]

    def fail_create(self, status: int = 500, *, places_call: bool = True) -> None:
        self.failures.append((status, places_call))

    def dialed(self, number: str) -> list[FakeTwilioCall]:
        return [c for c in self.calls.values() if c.to == number]

    # -- REST ---------------------------------------------------------------------------------

    def _authorized(self, request: Request, account: str) -> bool:
        header = request.headers.get("authorization", "")
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return account == self.account_sid and header == f"Basic {expected}"

    async def _create(self, request: Request) -> Response:
        form = await request.form()
        fields = [(k, str(v)) for k, v in form.multi_items()]
        self.creates.append({"fields": fields, "status": 0})
        record = self.creates[-1]
        if not self._authorized(request, request.path_params["account"]):
            record["status"] = 401
            return _twilio_error(401, 20003, "Authenticate")
        values = dict(fields)
        for name in ("To", "From"):
            if not E164.match(values.get(name, "")):
                record["status"] = 400
                return _twilio_error(
                    400, 21211, f"The '{name}' number is not a valid phone number."
                )
        if not values.get("Url", "").startswith(("http://", "https://")):
            record["status"] = 400
            return _twilio_error(400, 21205, "Url is not a valid URL.")
        call = FakeTwilioCall(
            sid=new_sid(),
            to=values["To"],
            from_=values["From"],
            url=values["Url"],
            status_url=values.get("StatusCallback"),
            events=tuple(v for k, v in fields if k == "StatusCallbackEvent") or ("completed",),
            machine_detection=values.get("MachineDetection"),
            timeout_s=int(values.get("Timeout") or 60),
        )
        if self.failures:
            status, places_call = self.failures.pop(0)
            record["status"] = status
            if places_call:
                self._place(call)
            return _twilio_error(status, 20500, "Internal Server Error")
        self._place(call)
        record["status"] = 201
        return JSONResponse(
            {"sid": call.sid, "status": "queued", "to": call.to, "from": call.from_},
            status_code=201,
        )

    def _place(self, call: FakeTwilioCall) -> None:
        self.calls[call.sid] = call
        task = asyncio.create_task(self._play(call, self.callees.get(call.to, self.default)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, request: Request) -> Response:
        if not self._authorized(request, request.path_params["account"]):
            return _twilio_error(401, 20003, "Authenticate")
        call = self.calls.get(request.path_params["sid"])
        if call is None:
            return _twilio_error(404, 20404, "The requested resource was not found")
        if request.method == "GET":
            return JSONResponse({"sid": call.sid, "status": call.status})
        status = str((await request.form()).get("Status") or "")
        self.cancels.append((call.sid, status))
        if status == "canceled" and call.status in ("queued", "ringing"):
            await self._finish(call, "canceled")
        elif status == "completed" and call.status == "in-progress":
            await self._finish(call, "completed")
        else:
            return _twilio_error(400, 21220, "Call is not in-progress. Cannot redirect.")
        return JSONResponse({"sid": call.sid, "status": call.status})

    # -- the callee ---------------------------------------------------------------------------

    async def _play(self, call: FakeTwilioCall, callee: TwilioCallee) -> None:
        await self._callback(call, "initiated")
        await asyncio.sleep(callee.ring_s)
        if call.status != "queued":
            return
        call.status = "ringing"
        await self._callback(call, "ringing")
        await asyncio.sleep(callee.ring_s)
        if call.status != "ringing":
            return
        if callee.outcome in ("busy", "no-answer", "failed"):
            await self._finish(call, callee.outcome)
            return
        call.status = "in-progress"
        if call.machine_detection:
            machine = callee.outcome == "machine"
            end = (
                "machine_end_beep"
                if call.machine_detection == "DetectMessageEnd"
                else "machine_start"
            )
            call.answered_by = end if machine else "human"
        await self._callback(call, "in-progress", event="answered")
        twiml = await self._fetch_twiml(call)
        call.twiml = twiml
        sip = _sip_of(twiml)
        if sip is None:
            await self._finish(call, "completed")
            return
        await self._bridge(call, callee, sip)

    async def _bridge(self, call: FakeTwilioCall, callee: TwilioCallee, sip_uri: str) -> None:
        assert self.openai is not None and self.webhook_url is not None
        headers = [
            ("X-Twilio-CallSid", new_sid()),
            *_uri_headers(sip_uri),
            *self.extra_bridge_headers,
        ]
        fake = self.openai
        ids: list[tuple[str, str]] = []
        if "realtime" in self.engines and "live" in self.engines:
            ids = list(zip(("realtime", "live"), fake.add_dual_call(), strict=True))
        elif "live" in self.engines:
            ids = [("live", fake.live.add_session())]
        else:
            ids = [("realtime", fake.add_call())]
        for engine, call_id in ids:
            if engine == "live":
                event = live_incoming_event(
                    call_id, from_=call.from_, to=call.to, extra_headers=headers
                )
            else:
                event = incoming_call_event(
                    call_id, from_=call.from_, to=call.to, extra_headers=headers
                )
            await send_webhook(self.webhook_url, self.webhook_secret, event, client=self._http)
        accepted = await self._wait_accepted(ids)
        if accepted is None:
            await self._finish(call, "completed")
            return
        engine, call_id = accepted
        call.bridged = accepted
        await self._callee_speaks(engine, call_id, callee)
        started = time.monotonic()
        while self._leg_up(engine, call_id):
            if (
                callee.hangs_up_after is not None
                and time.monotonic() - started >= callee.hangs_up_after
            ):
                if engine == "live":
                    await fake.live.caller_hangs_up(call_id)
                else:
                    await fake.caller_hangs_up(call_id)
                break
            await asyncio.sleep(0.02)
        await self._finish(call, "completed")

    async def _wait_accepted(
        self, ids: list[tuple[str, str]], timeout_s: float = 10.0
    ) -> tuple[str, str] | None:
        assert self.openai is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for engine, call_id in ids:
                state = self._state(engine, call_id)
                if state == "accepted":
                    return engine, call_id
            if all(self._state(e, c) == "ended" for e, c in ids):
                return None
            await asyncio.sleep(0.01)
        return None

    def _state(self, engine: str, call_id: str) -> str | None:
        assert self.openai is not None
        if engine == "live":
            session = self.openai.live.sessions.get(call_id)
            return session.state if session else None
        return self.openai.call_state(call_id)

    def _leg_up(self, engine: str, call_id: str) -> bool:
        return self._state(engine, call_id) not in ("ended", None)

    async def _callee_speaks(self, engine: str, call_id: str, callee: TwilioCallee) -> None:
        assert self.openai is not None
        text = VOICEMAIL_GREETING if callee.outcome == "machine" else callee.says
        if not text:
            return
        if engine == "live":
            await self.openai.live.wait_attached(call_id)
            await self.openai.live.caller_says(call_id, text)
            return
        conn = await self.openai.wait_connected(call_id)
        await conn.send(server_events.input_transcription_completed(None, text))

    async def _finish(self, call: FakeTwilioCall, status: str) -> None:
        call.status = status
        await self._callback(call, status, event="completed")

    async def _fetch_twiml(self, call: FakeTwilioCall) -> str:
        params = {
            "CallSid": call.sid,
            "AccountSid": self.account_sid,
            "From": call.from_,
            "To": call.to,
            "CallStatus": "in-progress",
            "Direction": "outbound-api",
        }
        if call.answered_by:
            params["AnsweredBy"] = call.answered_by
        response = await self._signed_post(call.url, params)
        return response.text if response is not None and response.status_code == 200 else ""

    async def _callback(
        self, call: FakeTwilioCall, status: str, *, event: str | None = None
    ) -> None:
        if call.status_url is None or (event or status) not in call.events:
            return
        params = {
            "CallSid": call.sid,
            "AccountSid": self.account_sid,
            "From": call.from_,
            "To": call.to,
            "CallStatus": status,
            "Direction": "outbound-api",
        }
        if status in ("completed", "busy", "no-answer", "failed", "canceled"):
            params["CallDuration"] = str(int(time.monotonic() - call.created_at))
        if call.answered_by:
            params["AnsweredBy"] = call.answered_by
        call.callbacks.append(status)
        await self._signed_post(call.status_url, params)

    async def _signed_post(self, url: str, params: dict[str, str]) -> httpx.Response | None:
        signature = self._validator.compute_signature(url, params)
        try:
            return await self._http.post(
                url, data=params, headers={"X-Twilio-Signature": signature}
            )
        except httpx.HTTPError:
            return None


def _twilio_error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status_code=status,
    )


def _sip_of(twiml: str) -> str | None:
    """The ``<Dial><Sip>`` URI of a TwiML answer, or None (``<Hangup/>``, anything else)."""
    try:
        root = ET.fromstring(twiml)
    except ET.ParseError:
        return None
    sip = root.find("./Dial/Sip")
    return sip.text.strip() if sip is not None and sip.text else None


def _uri_headers(uri: str) -> list[tuple[str, str]]:
    """Custom SIP headers a ``<Sip>`` URI carries in its query (``?X-Foo=1&X-Bar=2``)."""
    _, _, query = uri.partition("?")
    return [(k, v) for k, v in parse_qsl(query) if k.startswith("X-")]
