"""A local fake of the OpenAI realtime SIP service: call-control REST plus the websocket.

One Starlette app on one ``127.0.0.1:<port>``, because callserver derives the websocket URL
from its REST base URL (``http://h:p/v1`` -> ``ws://h:p/v1/realtime?call_id=...``). It runs
as a task in the current event loop so tests share the loop with the code under test::

    async with FakeOpenAI() as fake:
        call_id = fake.add_call()
        ...  # point callserver at fake.base_url
        conn = await fake.wait_connected(call_id)
        await conn.send(function_call_turn("lookup", {"id": 1}))
        await conn.expect("conversation.item.create")

Standalone, for demos: ``python -m callserver.testing.fake_openai --port 8765 --accept-any``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self

import httpx
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from callserver.testing.fake_calls import (
    Decision,
    FakeCall,
    RecordedRequest,
    ScriptedRule,
    error_body,
)
from callserver.testing.fake_live import FakeLive
from callserver.testing.fake_realtime import (
    DEFAULT_AUTO_REPLIES,
    Event,
    FakeConnection,
    ReplyHandler,
)
from callserver.testing.fake_responses import FakeResponses
from callserver.testing.fake_rest import CallControl, authorized, no_key_error, not_found
from callserver.testing.fake_server import InLoopServer, mark_denied
from callserver.testing.webhook_sender import (
    incoming_call_event,
    live_incoming_event,
    send_webhook,
)

__all__ = ["FakeOpenAI", "main"]

logger = logging.getLogger(__name__)


class FakeOpenAI:
    """Fake OpenAI realtime SIP service; see the module docstring.

    Everything it saw is recorded: ``requests`` (REST and websocket upgrades),
    ``connections`` per call, ``client_schema_errors`` for client events that fail the
    strict GA schema, ``rest_schema_errors`` for REST bodies that fail theirs.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        accept_any: bool = False,
        auto_respond: bool = True,
        end_on_refer: bool = True,
        refer_end_delay: float = 0.05,
    ) -> None:
        #: Calls, recorded requests, scripted failures; ``end_on_refer``,
        #: ``refer_end_delay`` and ``accept_any`` live there and can be changed at any time.
        self.control = CallControl(
            end_call=self._end_call_later,
            notify=self._notify,
            accept_any=accept_any,
            end_on_refer=end_on_refer,
            refer_end_delay=refer_end_delay,
        )
        #: Default for new connections: answer ``response.create`` with an empty response.
        self.auto_respond = auto_respond
        #: None: any number of control websockets per call; N: the N+1-th is refused (409).
        #: Whether the Realtime API allows several at once is not documented.
        self.max_connections: int | None = None
        #: Defaults copied into each new connection; edit before the client connects.
        self.auto_replies: dict[str, ReplyHandler | None] = dict(DEFAULT_AUTO_REPLIES)
        self.connections: dict[str, list[FakeConnection]] = {}
        self.client_schema_errors: list[tuple[str, Event, list[str]]] = []
        self._changed = asyncio.Condition()
        self._background: set[asyncio.Task[None]] = set()
        #: The GPT-Live service on the same port: sessions, REST, sidebands, scripting.
        self.live = FakeLive(
            self.control,
            abort=lambda websocket: self._server.abort(websocket),
            client_errors=self.client_schema_errors,
        )
        #: The Responses API on the same port (post-call analysis): scripting, requests.
        self.responses = FakeResponses()
        self.app = Starlette(
            routes=[
                Route(
                    "/v1/realtime/calls/{call_id}/{action}",
                    self.control.endpoint,
                    methods=["POST"],
                ),
                WebSocketRoute("/v1/realtime", self._websocket),
                *self.live.routes(),
                *self.responses.routes(),
            ]
        )
        self._server = InLoopServer(self.app, host, port)

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self._server.host

    @property
    def port(self) -> int:
        """The bound port (the ephemeral one once started)."""
        return self._server.port

    @property
    def base_url(self) -> str:
        """REST base URL, e.g. ``http://127.0.0.1:54321/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def ws_url(self) -> str:
        """Realtime websocket URL without the query, e.g. ``ws://127.0.0.1:54321/v1/realtime``."""
        return f"ws://{self.host}:{self.port}/v1/realtime"

    def realtime_url(self, call_id: str) -> str:
        """The websocket URL for one call, as callserver should derive it."""
        return f"{self.ws_url}?call_id={call_id}"

    async def start(self) -> None:
        """Bind (ephemeral port unless given) and serve in the current event loop."""
        await self._server.start()

    async def stop(self) -> None:
        """Close every websocket cleanly, finish background work, stop the server."""
        open_conns = [c for cs in self.connections.values() for c in cs if not c.closed.is_set()]
        await asyncio.gather(*(c.close(1001, "server stopping") for c in open_conns))
        await self.live.stop()
        self.responses.release_delays()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._server.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- calls --------------------------------------------------------------------------------

    @property
    def calls(self) -> dict[str, FakeCall]:
        """Every call by id, with its state, accepted session, refer target..."""
        return self.control.calls

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every REST request and websocket upgrade, in arrival order."""
        return self.control.requests

    @property
    def rest_schema_errors(self) -> list[tuple[str, str, list[str]]]:
        """(call_id, action, errors) for REST bodies that failed their strict schema."""
        return self.control.rest_schema_errors

    def add_call(self, call_id: str | None = None) -> str:
        """Register a ringing call (what an incoming INVITE does); returns its id."""
        return self.control.add_call(call_id)

    def call_state(self, call_id: str) -> str | None:
        """``"ringing"``, ``"accepted"``, ``"ended"``, or None for an unknown call."""
        call = self.calls.get(call_id)
        return call.state if call else None

    def hangup_observed(self, call_id: str) -> bool:
        """True if callserver POSTed ``/hangup`` for this call, whatever the answer was."""
        return bool(self.requests_for(call_id, "hangup"))

    def requests_for(self, call_id: str, action: str | None = None) -> list[RecordedRequest]:
        """Recorded requests for one call, optionally one action (``"realtime"`` = ws)."""
        return [
            r
            for r in self.requests
            if r.call_id == call_id and (action is None or r.action == action)
        ]

    async def broadcast(self, call_id: str, events: Event | list[Event]) -> None:
        """Send server events to every open control websocket of a call, as the service
        does when several are attached."""
        for conn in [c for c in self.connections.get(call_id, []) if not c.closed.is_set()]:
            try:
                await conn.send(events)
            except (ConnectionError, RuntimeError, OSError, TimeoutError):
                pass  # closing meanwhile: it will not see these, as on the service

    async def caller_hangs_up(self, call_id: str, *, clean: bool = False) -> None:
        """The caller hangs up: the call ends and the websocket drops (1006 unless ``clean``)."""
        await self._end_call(call_id, "caller", close_code=1000 if clean else None)

    def add_dual_call(self) -> tuple[str, str]:
        """One ringing SIP call known to both APIs, as OpenAI announces it to a project that
        subscribed both webhooks: (Realtime call id, Live session id), unrelated ids that
        share one decision (the first accept or reject on either wins)."""
        decision = Decision()
        call_id = self.add_call()
        self.calls[call_id].decision = decision
        return call_id, self.live.add_session(decision=decision)

    async def send_live_incoming(
        self,
        webhook_url: str,
        secret: str,
        *,
        session_id: str | None = None,
        **kwargs: Any,
    ) -> tuple[str, httpx.Response]:
        """Register a ringing Live session (unless ``session_id`` names one) and deliver its
        signed ``live.transport.incoming`` (``event_type=`` for the deprecated name)."""
        send_keys = {"msg_id", "timestamp", "client"}
        send_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in send_keys}
        if session_id is None or session_id not in self.live.sessions:
            session_id = self.live.add_session(session_id)
        event = live_incoming_event(session_id, **kwargs)
        return session_id, await send_webhook(webhook_url, secret, event, **send_kwargs)

    async def send_incoming_call(
        self, webhook_url: str, secret: str, *, call_id: str | None = None, **kwargs: Any
    ) -> tuple[str, httpx.Response]:
        """Register a ringing call and deliver its signed ``realtime.call.incoming`` webhook.

        ``kwargs`` go to ``incoming_call_event`` (``from_``, ``to``, ``extra_headers``...) and
        ``send_webhook`` (``msg_id``, ``timestamp``, ``client``).
        """
        send_keys = {"msg_id", "timestamp", "client"}
        send_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in send_keys}
        call_id = self.add_call(call_id)
        event = incoming_call_event(call_id, **kwargs)
        return call_id, await send_webhook(webhook_url, secret, event, **send_kwargs)

    # -- scripting ----------------------------------------------------------------------------

    def fail(
        self,
        action: str,
        status: int = 500,
        times: int = 1,
        call_id: str | None = None,
        body: Any = None,
    ) -> None:
        """Answer the next ``times`` ``action`` requests with ``status`` (and ``body``).

        ``action`` is ``accept``/``reject``/``refer``/``hangup``, or ``realtime`` to refuse
        websocket upgrades. The body defaults to an OpenAI ``server_error``.
        """
        rule = ScriptedRule(action, call_id, times, status=status, body=body)
        self.control.failures.append(rule)

    def delay(
        self, action: str, seconds: float, times: int = 1, call_id: str | None = None
    ) -> None:
        """Hold the next ``times`` ``action`` requests for ``seconds`` before handling them."""
        self.control.delays.append(ScriptedRule(action, call_id, times, seconds=seconds))

    async def wait_connected(
        self,
        call_id: str,
        timeout: float = 5.0,
        *,
        index: int | None = None,
    ) -> FakeConnection:
        """The call's open websocket (newest), waiting for it; ``index`` picks the n-th ever."""

        def find() -> FakeConnection | None:
            conns = self.connections.get(call_id, [])
            if index is not None:
                return conns[index] if len(conns) > index else None
            open_conns = [c for c in conns if not c.closed.is_set()]
            return open_conns[-1] if open_conns else None

        try:
            async with asyncio.timeout(timeout), self._changed:
                while (conn := find()) is None:
                    await self._changed.wait()
                return conn
        except TimeoutError:
            attempts = [(r.status, r.errors) for r in self.requests_for(call_id, "realtime")]
            raise AssertionError(
                f"call {call_id}: no websocket within {timeout}s; attempts: {attempts}"
            ) from None

    # -- websocket ------------------------------------------------------------------------------

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
            await self._notify()
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
        await self._notify()
        try:
            await conn.run()
        finally:
            await self._notify()

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
        open_conns = [c for c in self.connections.get(call_id, []) if not c.closed.is_set()]
        if self.max_connections is not None and len(open_conns) >= self.max_connections:
            return 409, error_body(f"Call {call_id} already has a control connection")
        return 101, None

    def _on_client_event(self, conn: FakeConnection, event: Event, errors: list[str]) -> None:
        if errors:
            self.client_schema_errors.append((conn.call_id, event, errors))
            logger.warning("call %s: invalid client event %s: %s", conn.call_id, event, errors)

    # -- internals ----------------------------------------------------------------------------

    async def _end_call(
        self, call_id: str, reason: str, close_code: int | None = None, after: float = 0.0
    ) -> None:
        """End a call and close its websockets: ``close_code`` None means drop (1006)."""
        if after:
            await asyncio.sleep(after)
        call = self.calls.get(call_id)
        if call is not None and call.state != "ended":
            call.state, call.ended_by = "ended", reason
        for conn in [c for c in self.connections.get(call_id, []) if not c.closed.is_set()]:
            if close_code is None:
                await conn.drop()
            else:
                await conn.close(close_code)

    def _end_call_later(
        self, call_id: str, reason: str, close_code: int | None, after: float
    ) -> None:
        """End a call from a REST handler without holding up its response."""
        self._in_background(self._end_call(call_id, reason, close_code, after))

    def _in_background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


async def _serve_forever(fake: FakeOpenAI) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with fake:
        print(f"fake OpenAI at {fake.base_url} (websocket {fake.ws_url})", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    """Run the fake standalone (for demos): ``python -m callserver.testing.fake_openai``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--accept-any", action="store_true", help="treat unknown call ids as ringing calls"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    asyncio.run(
        _serve_forever(FakeOpenAI(host=args.host, port=args.port, accept_any=args.accept_any))
    )


if __name__ == "__main__":
    main()
