"""The GPT-Live side of the fake OpenAI: Live SIP sessions, their REST and their sidebands.

Mounted by :class:`~callserver.testing.fake_openai.FakeOpenAI` on the same base URL as the
Realtime fake (``/v1/live/sessions/...``), sharing its request log, scripted failures and
schema-error lists, so one fake serves both engines and a call that fires both webhooks:

- REST ``accept`` / ``reject`` / ``refer`` / ``hangup`` with the decision state machine
  (the first accept or reject, on either API, wins; later ones get ``decision_already_made``),
  bodies validated strictly against the ``openai`` package's Live types;
- ``/attach`` sidebands: replay of the last ``replay_window_s`` seconds of events with their
  original ids, fan-out to every attached sideband (or one at a time), ``session.closed``
  with the right reason, then a close handshake (``graceful_close=true``) or a dropped TCP;
- a scripted model and caller: transcript fragments, delegated function calls, DTMF, usage;
- ``GET .../content``: the stereo WAV of a stored (``store: true``) session once finalised.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import time
import uuid
import wave
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from callserver.testing import live_events as le
from callserver.testing.fake_calls import Decision, RecordedRequest, error_body
from callserver.testing.fake_live_outbound import FakeLiveOutbound
from callserver.testing.fake_live_rules import Refused, handle_client_event
from callserver.testing.fake_rest import CallControl, authorized, decided, no_key_error
from callserver.testing.fake_server import mark_denied
from callserver.testing.fake_sideband import FakeSideband
from callserver.testing.live_schemas import (
    accept_errors,
    refer_errors,
    reject_errors,
    server_event_errors,
)

__all__ = ["FakeLive", "FakeLiveSession", "new_session_id"]

Event = dict[str, Any]
Result = tuple[int, Any]
ACTIONS = ("accept", "reject", "refer", "hangup")
MS_PER_CHAR = 60
"""Session timeline advance per transcript character (about natural speech)."""


def new_session_id() -> str:
    """A Live session id shaped like OpenAI's (``live_<hex>``); opaque to callserver."""
    return f"live_{uuid.uuid4().hex}"


@dataclasses.dataclass
class FakeLiveSession:
    """A Live SIP session as the fake sees it."""

    session_id: str
    decision: Decision
    state: str = "ringing"
    """ringing -> accepted -> ended (or ringing -> ended by a reject); an outbound session:
    dialing -> accepted (answered) -> ended, or dialing -> ended (failed, hung up)."""
    config: dict[str, Any] | None = None
    """The accepted ``session`` config, with every ``session.update`` merged in."""
    ended_by: str | None = None
    close_reason: str | None = None
    reject_status: int | None = None
    refer_target: str | None = None
    accepted_at: float | None = None
    closed_at: float | None = None
    clock_ms: int = 0
    log: list[tuple[float, Event]] = dataclasses.field(default_factory=list)
    sidebands: list[FakeSideband] = dataclasses.field(default_factory=list)
    calls: dict[str, str] = dataclasses.field(default_factory=dict)
    """Delegated function call id -> the backend response that made it."""
    outputs: dict[str, str] = dataclasses.field(default_factory=dict)
    continued: list[str] = dataclasses.field(default_factory=list)
    """Backend responses continued by a ``response.create``."""
    backend_input: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    updates: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    appends: list[Event] = dataclasses.field(default_factory=list)
    client_delegations: set[str] = dataclasses.field(default_factory=set)
    answered_delegations: set[str] = dataclasses.field(default_factory=set)
    outbound: bool = False
    """Created by an outbound create: ``dialing`` until the callee answers."""

    @property
    def mode(self) -> str:
        delegation = (self.config or {}).get("delegation") or {"type": "client"}
        return str(delegation.get("type", "client"))

    @property
    def open_sidebands(self) -> list[FakeSideband]:
        return [s for s in self.sidebands if not s.closed.is_set()]

    @property
    def seconds(self) -> float:
        if self.accepted_at is None:
            return 0.0
        return float(int((self.closed_at or time.monotonic()) - self.accepted_at))

    def resource(self) -> dict[str, Any]:
        return le.session_resource(self.session_id, self.config)

    def pending_calls(self) -> list[str]:
        return [c for c in self.calls if c not in self.outputs]


ResponseHandler = Callable[["FakeLive", FakeLiveSession, str], Awaitable[None]]
"""Scripts the backend's answer to a ``response.create`` (gets the new response id)."""


class FakeLive:
    """The Live service of the fake; see the module docstring."""

    def __init__(
        self,
        control: CallControl,
        *,
        abort: Callable[[WebSocket], bool],
        client_errors: list[tuple[str, Event, list[str]]],
    ) -> None:
        self.control = control
        self.sessions: dict[str, FakeLiveSession] = {}
        self.client_errors = client_errors
        self.replay_window_s = 3.0
        self.max_sidebands: int | None = None
        """None: any number of sidebands, events fanned out; N: the N+1-th is refused."""
        self.end_on_refer = True
        self.refer_close_reason = "remote_hangup"
        self.refer_end_delay = 0.05
        self.recording_delay_s = 0.0
        """How long a stored session takes to finalise before its recording is served."""
        self.on_response_create: ResponseHandler | None = None
        self.auto_reply = True
        """False for replays: no acks, no backend responses, no ``session.started``; every
        server event then comes from a cassette. Client events are still validated."""
        self.on_client_event: Callable[[str, Event], None] | None = None
        """Sees every client event of every sideband (replays match them)."""
        self._abort = abort
        self._changed = asyncio.Condition()
        self._background: set[asyncio.Task[None]] = set()
        #: Outbound calls: ``POST /v1/live/sessions`` with a SIP transport, scripted callees.
        self.outbound = FakeLiveOutbound(self)

    def routes(self) -> list[Any]:
        return [
            Route("/v1/live/sessions", self.outbound.create, methods=["POST"]),
            Route("/v1/live/sessions/{session_id}/content", self._content, methods=["GET"]),
            Route("/v1/live/sessions/{session_id}/{action}", self._rest, methods=["POST"]),
            WebSocketRoute("/v1/live/sessions/{session_id}/attach", self._attach),
        ]

    async def stop(self) -> None:
        for session in self.sessions.values():
            for sideband in session.open_sidebands:
                await sideband.close(1001, "server stopping")
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    # -- sessions -------------------------------------------------------------------------

    def add_session(self, session_id: str | None = None, decision: Decision | None = None) -> str:
        """A ringing Live SIP session (what an incoming INVITE does); returns its id."""
        session_id = session_id or new_session_id()
        self.sessions[session_id] = FakeLiveSession(session_id, decision or Decision())
        return session_id

    def session(self, session_id: str) -> FakeLiveSession:
        return self.sessions[session_id]

    def _lookup(self, session_id: str) -> FakeLiveSession | None:
        if session_id not in self.sessions and self.control.accept_any:
            self.add_session(session_id)
        return self.sessions.get(session_id)

    async def broadcast(self, session: FakeLiveSession, event: Event) -> None:
        """Send a server event to every open sideband and keep it for replay. Each event is
        checked against the ``openai`` package's server types first: a fake that sends what
        the service cannot is a bug in the fake."""
        errors = server_event_errors(event)
        if errors:
            raise AssertionError(f"fake sends an invalid {event.get('type')}: {errors}")
        session.log.append((time.monotonic(), event))
        for sideband in session.open_sidebands:
            try:
                await sideband.send(event)
            except (ConnectionError, RuntimeError, OSError, TimeoutError, WebSocketDisconnect):
                pass  # closing meanwhile: it will not see this event, as on the service

    async def close_session(self, session_id: str, reason: str, *, after: float = 0.0) -> None:
        """End the session: ``session.closed`` to every sideband, then end their sockets."""
        if after:
            await asyncio.sleep(after)
        session = self.sessions.get(session_id)
        if session is None or session.state == "ended":
            return
        session.state, session.close_reason = "ended", reason
        session.ended_by = session.ended_by or reason
        session.closed_at = time.monotonic()
        await self.broadcast(
            session, le.session_closed(session.resource(), reason, session.seconds)
        )
        for sideband in session.open_sidebands:
            await sideband.end()
        await self._notify()

    # -- REST ------------------------------------------------------------------------------

    async def _rest(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body, bad_json = (json.loads(raw) if raw.strip() else None), False
        except (json.JSONDecodeError, UnicodeDecodeError):
            body, bad_json = raw.decode("utf-8", "replace"), True
        record = RecordedRequest(
            method="POST",
            path=request.url.path,
            call_id=request.path_params["session_id"],
            action=request.path_params["action"],
            headers=dict(request.headers),
            json=body,
        )
        self.control.requests.append(record)
        status, payload = await self._handle(record, body, bad_json)
        record.status = status
        await self._notify()
        if payload is None:
            return Response(status_code=status)
        return JSONResponse(payload, status_code=status)

    async def _handle(self, record: RecordedRequest, body: Any, bad_json: bool) -> Result:
        if not authorized(record.headers):
            return 401, no_key_error()
        action, session_id = record.action, str(record.call_id)
        if action not in ACTIONS:
            return 404, error_body(f"Invalid URL (POST {record.path})")
        if (failure := await self.control.scripted(action, session_id)) is not None:
            return failure
        session = self._lookup(session_id)
        if session is not None and action in ("accept", "reject") and session.decision.made:
            return decided()  # whatever became of the call since: its decision was made
        if session is None or (session.state == "ended" and action != "hangup"):
            return _not_found(session_id)
        if bad_json:
            return 400, error_body("We could not parse the JSON body of your request.")
        check = {"accept": accept_errors, "reject": reject_errors, "refer": refer_errors}.get(
            action
        )
        errors = check(body) if check else ([] if body is None else ["hangup takes no body"])
        if errors:
            record.errors = errors
            self.control.rest_schema_errors.append((session_id, action, errors))
            code = "unknown_parameter" if "Additional properties" in errors[0] else "invalid_value"
            return 400, error_body("Invalid request: " + "; ".join(errors), code=code)
        return await getattr(self, f"_do_{action}")(session, body)

    async def _do_accept(self, session: FakeLiveSession, body: dict[str, Any]) -> Result:
        if session.state != "ringing" or not session.decision.take("live:accept"):
            return decided()
        session.state, session.config = "accepted", dict(body["session"])
        session.accepted_at = time.monotonic()
        if self.auto_reply:
            await self.broadcast(session, le.session_started(session.resource()))
        return 200, None

    async def _do_reject(self, session: FakeLiveSession, body: dict[str, Any]) -> Result:
        if session.state != "ringing" or not session.decision.take("live:reject"):
            return decided()
        session.state, session.ended_by = "ended", "reject"
        session.reject_status = int(body["status_code"])
        await self._notify()
        return 200, None

    async def _do_refer(self, session: FakeLiveSession, body: dict[str, Any]) -> Result:
        if session.state != "accepted":
            return 400, error_body(f"Session {session.session_id} is not active")
        session.refer_target = body["target_uri"]
        if self.end_on_refer:
            session.ended_by = "refer"
            self._in_background(
                self.close_session(
                    session.session_id, self.refer_close_reason, after=self.refer_end_delay
                )
            )
        return 200, None

    async def _do_hangup(self, session: FakeLiveSession, body: Any) -> Result:
        del body
        if session.state == "ended":
            return _not_found(session.session_id)
        session.ended_by = "hangup"
        if session.state == "ringing":
            session.state = "ended"
            return 200, None
        # accepted, or an outbound session still dialing: the session closes
        self._in_background(self.close_session(session.session_id, "close_requested"))
        return 200, None

    async def _content(self, request: Request) -> Response:
        """The stored session's recording: binary stereo WAV (left caller, right agent)."""
        session_id = request.path_params["session_id"]
        self.control.requests.append(
            RecordedRequest(
                "GET", request.url.path, session_id, "content", dict(request.headers), None
            )
        )
        if not authorized(request.headers):
            return JSONResponse(no_key_error(), status_code=401)
        session = self.sessions.get(session_id)
        if session is None:
            return JSONResponse(_not_found(session_id)[1], status_code=404)
        if not (session.config or {}).get("store"):
            return JSONResponse(error_body("Session was not stored (store: true)"), status_code=400)
        ready = session.closed_at is not None and (
            time.monotonic() - session.closed_at >= self.recording_delay_s
        )
        if not ready:
            return JSONResponse(error_body("Session is still being finalized"), status_code=409)
        return Response(stereo_wav(session.seconds), media_type="audio/wav")

    # -- sidebands ---------------------------------------------------------------------------

    async def _attach(self, websocket: WebSocket) -> None:
        session_id = websocket.path_params["session_id"]
        record = RecordedRequest(
            "GET", websocket.url.path, session_id, "attach", dict(websocket.headers), None
        )
        self.control.requests.append(record)
        status, payload = await self._admit(websocket, session_id)
        record.status = status
        if status != 101:
            record.errors = [payload["error"]["message"]]
            await self._notify()
            mark_denied()
            await websocket.send_denial_response(JSONResponse(payload, status_code=status))
            return
        session = self.sessions[session_id]
        await websocket.accept()
        sideband = FakeSideband(
            session_id,
            websocket,
            graceful_close=websocket.query_params.get("graceful_close") == "true",
            on_event=lambda sb, event: handle_client_event(self, session, sb, event),
            abort=self._abort,
        )
        if self.max_sidebands is not None and len(session.open_sidebands) >= self.max_sidebands:
            session.sidebands.append(sideband)
            reader = asyncio.create_task(sideband.run())
            await sideband.send(le.error("sideband_limit", "Another sideband is attached."))
            await sideband.close(1008)
            await reader
            return
        session.sidebands.append(sideband)
        reader = asyncio.create_task(sideband.run())
        horizon = time.monotonic() - self.replay_window_s
        for at, event in list(session.log):
            if at >= horizon:
                await sideband.send(event)
        await self._notify()
        try:
            await reader
        finally:
            await self._notify()

    async def _admit(self, websocket: WebSocket, session_id: str) -> Result:
        if not authorized(websocket.headers):
            return 401, no_key_error()
        if (failure := await self.control.scripted("attach", session_id)) is not None:
            return failure
        session = self._lookup(session_id)
        if session is None or session.state == "ended":
            return _not_found(session_id)
        if session.state not in ("accepted", "dialing"):
            return 400, error_body(f"Session {session_id} has not been accepted")
        return 101, None

    async def wait_attached(
        self, session_id: str, timeout: float = 5.0, *, index: int | None = None
    ) -> FakeSideband:
        """The session's open sideband (newest), waiting for it; ``index``: the n-th ever."""

        def find() -> FakeSideband | None:
            session = self.sessions.get(session_id)
            if session is None:
                return None
            if index is not None:
                return session.sidebands[index] if len(session.sidebands) > index else None
            return session.open_sidebands[-1] if session.open_sidebands else None

        try:
            async with asyncio.timeout(timeout), self._changed:
                while (sideband := find()) is None:
                    await self._changed.wait()
                return sideband
        except TimeoutError:
            attempts = [
                (r.status, r.errors)
                for r in self.control.requests
                if r.call_id == session_id and r.action == "attach"
            ]
            raise AssertionError(
                f"session {session_id}: no sideband within {timeout}s; attempts: {attempts}"
            ) from None

    # -- the scripted model and caller ------------------------------------------------------

    async def _speak(self, session_id: str, text: str, parts: int, builder: Any) -> None:
        session = self.sessions[session_id]
        words = text.split(" ")
        size = max(1, -(-len(words) // max(parts, 1)))
        chunks = [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
        for index, chunk in enumerate(chunks):
            delta = chunk if index == 0 else " " + chunk
            start = session.clock_ms
            session.clock_ms += max(1, len(delta)) * MS_PER_CHAR
            await self.broadcast(session, builder(delta, start, session.clock_ms))

    async def agent_says(self, session_id: str, text: str, *, parts: int = 2) -> None:
        """The voice model speaks ``text``: output transcript fragments."""
        await self._speak(session_id, text, parts, le.output_transcript)

    async def caller_says(self, session_id: str, text: str, *, parts: int = 2) -> None:
        """The caller speaks ``text``: input transcript fragments."""
        await self._speak(session_id, text, parts, le.input_transcript)

    async def delegate(
        self,
        session_id: str,
        calls: list[tuple[str, dict[str, Any]]],
        *,
        call_ids: list[str] | None = None,
    ) -> list[str]:
        """The voice model delegates to the Responses backend, which calls functions:
        ``calls`` are (name, arguments). Returns their call ids."""
        session = self.sessions[session_id]
        delegation_id, response_id = le.new_id("item"), le.new_id("resp")
        ids = call_ids or [le.new_id("call") for _ in calls]
        await self.broadcast(
            session,
            le.delegation_created(delegation_id, "responses", session.clock_ms, response_id),
        )
        await self.broadcast(
            session,
            le.response_event(delegation_id, le.backend_response(response_id, "in_progress")),
        )
        for index, ((name, arguments), call_id) in enumerate(zip(calls, ids, strict=True)):
            session.calls[call_id] = response_id
            item = le.function_call_item(
                name, arguments, call_id, output_index=index, sequence=index + 1
            )
            await self.broadcast(session, le.response_event(delegation_id, item))
        usage = {"input_tokens": 120, "output_tokens": 20, "total_tokens": 140}
        done = le.backend_response(response_id, "completed", usage=usage, sequence=len(calls) + 1)
        await self.broadcast(session, le.response_event(delegation_id, done))
        return ids

    async def continue_backend(self, session: FakeLiveSession) -> None:
        """``response.create``: refused while a function call lacks its output; otherwise a
        new backend response (scripted by ``on_response_create``, else empty)."""
        missing = session.pending_calls()
        if missing:
            raise Refused(
                "invalid_request_error", f"No tool output found for function call {missing[0]}."
            )
        answered = {session.calls[c] for c in session.outputs}
        session.continued.extend(sorted(answered - set(session.continued)))
        response_id = le.new_id("resp")
        await self.broadcast(
            session, le.response_event(None, le.backend_response(response_id, "in_progress"))
        )
        if self.on_response_create is not None:
            await self.on_response_create(self, session, response_id)
        done = le.backend_response(response_id, "completed", sequence=1)
        await self.broadcast(session, le.response_event(None, done))

    async def delegate_to_client(self, session_id: str) -> str:
        """A client delegation (no task text, by design of the protocol); returns its id."""
        session = self.sessions[session_id]
        delegation_id = le.new_id("item")
        session.client_delegations.add(delegation_id)
        await self.broadcast(
            session, le.delegation_created(delegation_id, "client", session.clock_ms)
        )
        return delegation_id

    async def press(self, session_id: str, key: str) -> None:
        """The caller presses a key (SIP DTMF)."""
        await self.broadcast(self.sessions[session_id], le.dtmf_received(key))

    async def report_usage(self, session_id: str) -> None:
        session = self.sessions[session_id]
        await self.broadcast(session, le.usage_updated(session.seconds))

    async def caller_hangs_up(self, session_id: str) -> None:
        """The caller hangs up: ``session.closed`` with ``remote_hangup``."""
        await self.close_session(session_id, "remote_hangup")

    # -- internals --------------------------------------------------------------------------

    def in_background(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task the fake owns (cancelled when it stops)."""
        self._in_background(coro)

    def _in_background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


def _not_found(session_id: str) -> Result:
    return 404, error_body(f"Session {session_id} not found", code="session_not_found")


def stereo_wav(seconds: float, rate: int = 24_000) -> bytes:
    """A silent stereo PCM16 WAV (left = caller, right = agent), at most a second long."""
    frames = int(rate * min(max(seconds, 0.1), 1.0))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x00\x00\x00" * frames)
    return buffer.getvalue()
