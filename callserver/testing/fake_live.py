"""The GPT-Live side of the fake OpenAI: Live SIP sessions, their REST and their sidebands.

Mounted by :class:`~callserver.testing.fake_openai.FakeOpenAI` on the same base URL as the
Realtime fake (``/v1/live/sessions/...``), sharing its request log, scripted failures and
schema-error lists, so one fake serves both engines and a call that fires both webhooks:

- REST ``accept`` / ``reject`` / ``refer`` / ``hangup`` and ``GET .../content``
  (:mod:`~callserver.testing.fake_live_rest`);
- ``/attach`` sidebands (here): replay of the last ``replay_window_s`` seconds of events
  with their original ids, fan-out to every attached sideband (or one at a time),
  ``session.closed`` with the right reason, then a close handshake (``graceful_close=true``)
  or a dropped TCP; client events obey :mod:`~callserver.testing.fake_live_rules`;
- a scripted model and caller (:mod:`~callserver.testing.fake_live_script`);
- outbound calls (:mod:`~callserver.testing.fake_live_outbound`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from callserver.testing import live_events as le
from callserver.testing.fake_calls import Decision, RecordedRequest, error_body
from callserver.testing.fake_live_outbound import FakeLiveOutbound
from callserver.testing.fake_live_rest import LiveRest
from callserver.testing.fake_live_rest import stereo_wav as stereo_wav
from callserver.testing.fake_live_rules import handle_client_event
from callserver.testing.fake_live_script import MS_PER_CHAR as MS_PER_CHAR
from callserver.testing.fake_live_script import LiveScript, ResponseHandler
from callserver.testing.fake_live_session import (
    Event,
    FakeLiveSession,
    Result,
    new_session_id,
    session_not_found,
)
from callserver.testing.fake_rest import CONTROL_ACTIONS, CallControl, authorized, no_key_error
from callserver.testing.fake_server import mark_denied
from callserver.testing.fake_sideband import FakeSideband
from callserver.testing.fake_tasks import Changes, Tasks
from callserver.testing.live_schemas import server_event_errors

__all__ = ["FakeLive", "FakeLiveSession", "new_session_id"]

ACTIONS = CONTROL_ACTIONS
"""The REST actions on a session (the Realtime API's own)."""


class FakeLive(LiveScript):
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
        #: Wakes ``wait_attached`` whenever a request, sideband or session changes.
        self.changes = Changes()
        self._abort = abort
        self._tasks = Tasks()
        self._rest = LiveRest(self)
        #: Outbound calls: ``POST /v1/live/sessions`` with a SIP transport, scripted callees.
        self.outbound = FakeLiveOutbound(self)

    def routes(self) -> list[Any]:
        return [
            Route("/v1/live/sessions", self.outbound.create, methods=["POST"]),
            Route("/v1/live/sessions/{session_id}/content", self._rest.content, methods=["GET"]),
            Route("/v1/live/sessions/{session_id}/{action}", self._rest.endpoint, methods=["POST"]),
            WebSocketRoute("/v1/live/sessions/{session_id}/attach", self._attach),
        ]

    async def stop(self) -> None:
        for session in self.sessions.values():
            for sideband in session.open_sidebands:
                await sideband.close(1001, "server stopping")
        await self._tasks.cancel()

    def in_background(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task the fake owns (cancelled when it stops)."""
        self._tasks.start(coro)

    # -- sessions -------------------------------------------------------------------------

    def add_session(self, session_id: str | None = None, decision: Decision | None = None) -> str:
        """A ringing Live SIP session (what an incoming INVITE does); returns its id."""
        session_id = session_id or new_session_id()
        self.sessions[session_id] = FakeLiveSession(session_id, decision or Decision())
        return session_id

    def session(self, session_id: str) -> FakeLiveSession:
        return self.sessions[session_id]

    def lookup(self, session_id: str) -> FakeLiveSession | None:
        """The session, or None; with ``accept_any`` an unknown id becomes a ringing one."""
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
        await self.changes.notify()

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
            await self.changes.notify()
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
        await self.changes.notify()
        try:
            await reader
        finally:
            await self.changes.notify()

    async def _admit(self, websocket: WebSocket, session_id: str) -> Result:
        if not authorized(websocket.headers):
            return 401, no_key_error()
        if (failure := await self.control.scripted("attach", session_id)) is not None:
            return failure
        session = self.lookup(session_id)
        if session is None or session.state == "ended":
            return session_not_found(session_id)
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
            return await self.changes.wait_for(find, timeout)
        except TimeoutError:
            attempts = [
                (r.status, r.errors)
                for r in self.control.requests
                if r.call_id == session_id and r.action == "attach"
            ]
            raise AssertionError(
                f"session {session_id}: no sideband within {timeout}s; attempts: {attempts}"
            ) from None
