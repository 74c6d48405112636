"""GPT-Live outbound calls in the fake: ``POST /v1/live/sessions`` with a SIP transport.

Mounted by :class:`~callserver.testing.fake_live.FakeLive`. A create is validated strictly
(``live_schemas.create_errors``: the session as the ``openai`` package's MediaSessionConfig,
the SIP transport by the documented rules: E.164 destination, ``sips:`` trunk, digest auth,
E.164 caller number), answers 201 ``{session: {id}, transport: {type: sip}}`` and then plays
the callee on the sideband: ``transport.ringing``, then ``transport.answered`` or
``transport.failed`` (followed by ``session.closed``). Each destination can be scripted
(:class:`Callee`): answer and speak, voicemail, screening, busy, no answer, decline, fail.

``enabled = False`` answers every create 403 ``outbound_sip_not_enabled``; ``fail_create``
scripts 5xx answers (optionally *after* placing the call: the ambiguous outcome every
client must treat as unknown). ``creates`` lists every create in arrival order, so tests
can count how often a number was dialed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from callserver.testing import live_events as le
from callserver.testing.fake_callee import ScriptedCallee
from callserver.testing.fake_calls import Decision, RecordedRequest, error_body
from callserver.testing.fake_rest import authorized, bad_json_error, no_key_error, read_json
from callserver.testing.live_schemas import create_errors

if TYPE_CHECKING:
    from callserver.testing.fake_live import FakeLive
    from callserver.testing.fake_live_session import FakeLiveSession

__all__ = ["Callee", "FakeLiveOutbound", "OutboundCreate"]

CalleeOutcome = Literal[
    "answer", "voicemail", "screening", "busy", "no_answer", "declined", "failed"
]
FAILURE_CODES = {
    "busy": ("busy", "The callee is busy."),
    "no_answer": ("no_answer", "The callee did not answer."),
    "declined": ("declined", "The callee declined the call."),
    "failed": ("unreachable", "The call could not be set up."),
}
VOICEMAIL_GREETING = (
    "Hi, you've reached Ana. I can't take your call right now. Please leave a message after "
    "the tone."
)
SCREENING_PROMPT = (
    "Hi, the person you're calling is using a screening service. Go ahead and say your name "
    "and why you're calling."
)


@dataclasses.dataclass
class Callee(ScriptedCallee):
    """How the fake callee of one number behaves on the Live API."""

    outcome: CalleeOutcome = "answer"


@dataclasses.dataclass
class OutboundCreate:
    """One create request as the fake saw it."""

    destination: str | None
    status: int
    session_id: str | None
    body: Any
    at: float = dataclasses.field(default_factory=time.monotonic)
    placed: bool = False
    errors: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Failure:
    status: int
    times: int
    places_call: bool
    delay_s: float


class FakeLiveOutbound:
    """The fake's outbound side; see the module docstring."""

    def __init__(self, live: FakeLive) -> None:
        self._live = live
        self.enabled = True
        self.callees: dict[str, Callee] = {}
        self.default = Callee()
        self.creates: list[OutboundCreate] = []
        self.on_create: Callable[[OutboundCreate], None] | None = None
        self._failures: list[_Failure] = []
        self.delay_s = 0.0
        """How long each create takes before it answers (session initialisation)."""

    def script(self, number: str, callee: Callee | None = None, **kwargs: Any) -> Callee:
        """How the callee at ``number`` behaves (``Callee`` fields as keywords)."""
        self.callees[number] = callee or Callee(**kwargs)
        return self.callees[number]

    def fail_create(
        self, status: int = 504, *, times: int = 1, places_call: bool = True, delay_s: float = 0
    ) -> None:
        """Answer the next ``times`` creates with ``status``; ``places_call``: the call is
        placed anyway (what makes a 5xx or timeout ambiguous)."""
        self._failures.append(_Failure(status, times, places_call, delay_s))

    def dialed(self, number: str) -> list[OutboundCreate]:
        """Every create that placed a call to ``number``."""
        return [c for c in self.creates if c.destination == number and c.placed]

    # -- the endpoint -------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        body, bad_json = await read_json(request)
        if bad_json:
            body = None  # refused below as unparseable, and recorded as no body
        self._live.control.requests.append(
            RecordedRequest("POST", request.url.path, None, "create", dict(request.headers), body)
        )
        transport = body.get("transport") if isinstance(body, dict) else None
        destination = transport.get("destination") if isinstance(transport, dict) else None
        record = OutboundCreate(destination, 0, None, body)
        self.creates.append(record)
        status, payload = await self._handle(request, body, record)
        record.status = status
        if self.on_create is not None:
            self.on_create(record)
        return JSONResponse(payload, status_code=status)

    async def _handle(self, request: Request, body: Any, record: OutboundCreate) -> tuple[int, Any]:
        if not authorized(request.headers):
            return 401, no_key_error()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if body is None:
            return 400, bad_json_error()
        errors = create_errors(body)
        if errors:
            record.errors = errors
            self._live.control.rest_schema_errors.append(("create", "create", errors))
            code = (
                "unknown_parameter"
                if "unknown" in errors[0] or "Additional" in errors[0]
                else "invalid_value"
            )
            return 400, error_body("Invalid request: " + "; ".join(errors), code=code)
        if not self.enabled:
            return 403, error_body(
                "Outbound SIP calling is not enabled for this organization.",
                code="outbound_sip_not_enabled",
            )
        failure = next((f for f in self._failures if f.times > 0), None)
        if failure is not None:
            failure.times -= 1
            if failure.delay_s:
                await asyncio.sleep(failure.delay_s)
            if failure.places_call:
                record.placed = True
                record.session_id = self._place(body)
            return failure.status, error_body(
                "The server had an error while processing your request.", "server_error"
            )
        record.placed = True
        record.session_id = self._place(body)
        return 201, {"session": {"id": record.session_id}, "transport": {"type": "sip"}}

    def _place(self, body: dict[str, Any]) -> str:
        """A new session ringing the destination; the callee plays in the background."""
        live = self._live
        session_id = live.add_session(decision=Decision(made="outbound"))
        session = live.session(session_id)
        session.state = "dialing"
        session.config = dict(body["session"])
        session.outbound = True
        destination = body["transport"]["destination"]
        callee = self.callees.get(destination, self.default)
        live.in_background(self._play(session, callee))
        return session_id

    async def _play(self, session: FakeLiveSession, callee: Callee) -> None:
        live = self._live
        session_id = session.session_id
        await live.broadcast(session, le.session_started(session.resource()))
        await asyncio.sleep(callee.ring_s)
        if session.state != "dialing":
            return
        await live.broadcast(session, le.transport_ringing(session_id))
        await asyncio.sleep(callee.ring_s)
        if session.state != "dialing":
            return
        if callee.outcome in FAILURE_CODES:
            code, message = FAILURE_CODES[callee.outcome]
            await live.broadcast(session, le.transport_failed(session_id, code, message))
            await live.close_session(session_id, "connection_lost")
            return
        session.state = "accepted"
        session.accepted_at = time.monotonic()
        await live.broadcast(session, le.transport_answered(session_id))
        if callee.outcome == "voicemail":
            await live.caller_says(session_id, VOICEMAIL_GREETING)
        elif callee.outcome == "screening":
            await live.caller_says(session_id, SCREENING_PROMPT)
        elif callee.says:
            await live.caller_says(session_id, callee.says, parts=1)
        if callee.hangs_up_after is not None:
            await asyncio.sleep(callee.hangs_up_after)
            if session.state != "ended":
                await live.caller_hangs_up(session_id)
