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
import time
from typing import TYPE_CHECKING, Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from callserver.testing.fake_server import InLoopServer
from callserver.testing.fake_tasks import Tasks
from callserver.testing.fake_twilio_bridge import VOICEMAIL_GREETING as VOICEMAIL_GREETING
from callserver.testing.fake_twilio_bridge import OpenAIBridge
from callserver.testing.fake_twilio_calls import (
    E164,
    FakeTwilioCall,
    TwilioCallee,
    new_sid,
    sip_of,
    twilio_error,
)
from callserver.testing.fake_twilio_calls import CallOutcome as CallOutcome
from callserver.testing.harness import TEST_WEBHOOK_SECRET
from callserver.testing.local_service import LocalService

if TYPE_CHECKING:
    from callserver.testing.fake_openai import FakeOpenAI

__all__ = ["FakeTwilio", "FakeTwilioCall", "TwilioCallee"]


class FakeTwilio(LocalService):
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
        self._tasks = Tasks()
        self._http = httpx.AsyncClient(timeout=10)
        self._bridge = OpenAIBridge(self, self._http)
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

    async def stop(self) -> None:
        """Cancel the calls still playing, then close the client and stop the server."""
        await self._tasks.cancel()
        await self._http.aclose()
        await super().stop()

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
            return twilio_error(401, 20003, "Authenticate")
        values = dict(fields)
        for name in ("To", "From"):
            if not E164.match(values.get(name, "")):
                record["status"] = 400
                return twilio_error(400, 21211, f"The '{name}' number is not a valid phone number.")
        if not values.get("Url", "").startswith(("http://", "https://")):
            record["status"] = 400
            return twilio_error(400, 21205, "Url is not a valid URL.")
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
            return twilio_error(status, 20500, "Internal Server Error")
        self._place(call)
        record["status"] = 201
        return JSONResponse(
            {"sid": call.sid, "status": "queued", "to": call.to, "from": call.from_},
            status_code=201,
        )

    def _place(self, call: FakeTwilioCall) -> None:
        self.calls[call.sid] = call
        self._tasks.start(self._play(call, self.callees.get(call.to, self.default)))

    async def _call(self, request: Request) -> Response:
        if not self._authorized(request, request.path_params["account"]):
            return twilio_error(401, 20003, "Authenticate")
        call = self.calls.get(request.path_params["sid"])
        if call is None:
            return twilio_error(404, 20404, "The requested resource was not found")
        if request.method == "GET":
            return JSONResponse({"sid": call.sid, "status": call.status})
        status = str((await request.form()).get("Status") or "")
        self.cancels.append((call.sid, status))
        if status == "canceled" and call.status in ("queued", "ringing"):
            await self._finish(call, "canceled")
        elif status == "completed" and call.status == "in-progress":
            await self._finish(call, "completed")
        else:
            return twilio_error(400, 21220, "Call is not in-progress. Cannot redirect.")
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
        sip = sip_of(twiml)
        if sip is not None:
            await self._bridge.run(call, callee, sip)
        await self._finish(call, "completed")

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
