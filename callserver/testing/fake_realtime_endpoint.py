"""The Realtime control websocket of the fake OpenAI: ``/v1/realtime?call_id=...``.

A mixin of :class:`~callserver.testing.fake_openai.FakeOpenAI` (tests set
``fake.max_connections`` and read ``fake.connections`` on the fake itself): upgrades are
admitted or refused as the service does (401 without a key, scripted failures, 404 for an
unknown or ended call, 400 before the accept, 409 past ``max_connections``), each admitted
one becomes a :class:`~callserver.testing.fake_realtime.FakeConnection`, and ending a call
closes or drops its sockets.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from callserver.testing.fake_calls import FakeCall, RecordedRequest, error_body
from callserver.testing.fake_realtime import Event, FakeConnection, ReplyHandler
from callserver.testing.fake_rest import CallControl, authorized, no_key_error, not_found
from callserver.testing.fake_server import InLoopServer, mark_denied
from callserver.testing.fake_tasks import Changes, Tasks

__all__ = ["RealtimeEndpoint"]

logger = logging.getLogger("callserver.testing.fake_openai")


class RealtimeEndpoint:
    """The websocket endpoint and the call endings that close it; see the module docstring."""

    control: CallControl
    auto_respond: bool
    max_connections: int | None
    auto_replies: dict[str, ReplyHandler | None]
    connections: dict[str, list[FakeConnection]]
    client_schema_errors: list[tuple[str, Event, list[str]]]
    changes: Changes
    _tasks: Tasks
    _server: InLoopServer

    if TYPE_CHECKING:

        @property
        def calls(self) -> dict[str, FakeCall]: ...

        @property
        def requests(self) -> list[RecordedRequest]: ...

        def requests_for(
            self, call_id: str, action: str | None = None
        ) -> list[RecordedRequest]: ...

    def _open_connections(self, call_id: str) -> list[FakeConnection]:
        return [c for c in self.connections.get(call_id, []) if not c.closed.is_set()]

    async def broadcast(self, call_id: str, events: Event | list[Event]) -> None:
        """Send server events to every open control websocket of a call, as the service
        does when several are attached."""
        for conn in self._open_connections(call_id):
            try:
                await conn.send(events)
            except (ConnectionError, RuntimeError, OSError, TimeoutError):
                pass  # closing meanwhile: it will not see these, as on the service

    async def caller_hangs_up(self, call_id: str, *, clean: bool = False) -> None:
        """The caller hangs up: the call ends and the websocket drops (1006 unless ``clean``)."""
        await self._end_call(call_id, "caller", close_code=1000 if clean else None)

    async def wait_connected(
        self,
        call_id: str,
        timeout: float = 5.0,
        *,
        index: int | None = None,
    ) -> FakeConnection:
        """The call's open websocket (newest), waiting for it; ``index`` picks the n-th ever."""

        def find() -> FakeConnection | None:
            if index is not None:
                conns = self.connections.get(call_id, [])
                return conns[index] if len(conns) > index else None
            open_conns = self._open_connections(call_id)
            return open_conns[-1] if open_conns else None

        try:
            return await self.changes.wait_for(find, timeout)
        except TimeoutError:
            attempts = [(r.status, r.errors) for r in self.requests_for(call_id, "realtime")]
            raise AssertionError(
                f"call {call_id}: no websocket within {timeout}s; attempts: {attempts}"
            ) from None

    # -- the endpoint ---------------------------------------------------------------------------

    async def _websocket(self, websocket: WebSocket) -> None:
        call_id = websocket.query_params.get("call_id")
        record = RecordedRequest(
            method="GET",
            path=websocket.url.path,
            call_id=call_id,
            action="realtime",
            headers=dict(websocket.headers),
            json=None,
        )
        self.requests.append(record)
        status, payload = await self._admit(websocket, call_id)
        if status != 101:
            record.status, record.errors = status, [payload["error"]["message"]]
            await self.changes.notify()
            mark_denied()
            await websocket.send_denial_response(JSONResponse(payload, status_code=status))
            return
        assert call_id is not None
        call = self.calls[call_id]
        await websocket.accept()
        record.status = 101
        conn = FakeConnection(
            call_id,
            websocket,
            call.session or {},
            auto_replies=self.auto_replies,
            auto_respond=self.auto_respond,
            on_event=self._on_client_event,
            abort=self._server.abort,
        )
        self.connections.setdefault(call_id, []).append(conn)
        await self.changes.notify()
        try:
            await conn.run()
        finally:
            await self.changes.notify()

    async def _admit(self, websocket: WebSocket, call_id: str | None) -> tuple[int, Any]:
        """101 to accept the upgrade, else the status and error body of the refusal."""
        if not authorized(websocket.headers):
            return 401, no_key_error()
        if (failure := await self.control.scripted("realtime", call_id)) is not None:
            return failure
        if not call_id:
            return 400, error_body("Missing required parameter: 'call_id'.", param="call_id")
        call = self.control.lookup(call_id)
        if call is None or call.state == "ended":
            return not_found(call_id)
        if call.state != "accepted":
            return 400, error_body(f"Call {call_id} has not been accepted")
        open_conns = self._open_connections(call_id)
        if self.max_connections is not None and len(open_conns) >= self.max_connections:
            return 409, error_body(f"Call {call_id} already has a control connection")
        return 101, None

    def _on_client_event(self, conn: FakeConnection, event: Event, errors: list[str]) -> None:
        """Every client event of every connection (the replay fake extends this)."""
        if errors:
            self.client_schema_errors.append((conn.call_id, event, errors))
            logger.warning("call %s: invalid client event %s: %s", conn.call_id, event, errors)

    # -- ending calls ---------------------------------------------------------------------------

    async def _end_call(
        self, call_id: str, reason: str, close_code: int | None = None, after: float = 0.0
    ) -> None:
        """End a call and close its websockets: ``close_code`` None means drop (1006)."""
        if after:
            await asyncio.sleep(after)
        call = self.calls.get(call_id)
        if call is not None and call.state != "ended":
            call.state, call.ended_by = "ended", reason
        for conn in self._open_connections(call_id):
            if close_code is None:
                await conn.drop()
            else:
                await conn.close(close_code)

    def _end_call_later(
        self, call_id: str, reason: str, close_code: int | None, after: float
    ) -> None:
        """End a call from a REST handler without holding up its response."""
        self._tasks.start(self._end_call(call_id, reason, close_code, after))
