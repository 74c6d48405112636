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
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute

from callserver.testing.fake_calls import Decision, FakeCall, RecordedRequest, ScriptedRule
from callserver.testing.fake_live import FakeLive
from callserver.testing.fake_realtime import (
    DEFAULT_AUTO_REPLIES,
    Event,
    FakeConnection,
    ReplyHandler,
)
from callserver.testing.fake_realtime_endpoint import RealtimeEndpoint
from callserver.testing.fake_responses import FakeResponses
from callserver.testing.fake_rest import CallControl
from callserver.testing.fake_server import InLoopServer
from callserver.testing.fake_tasks import Changes, Tasks
from callserver.testing.local_service import LocalService
from callserver.testing.webhook_sender import (
    incoming_call_event,
    live_incoming_event,
    send_webhook,
)

__all__ = ["FakeOpenAI", "main"]

_SEND_KEYS = frozenset({"msg_id", "timestamp", "client"})
"""Keywords of ``send_webhook``; the rest of a ``send_*`` call's keywords build the event."""


def _send_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Take ``send_webhook``'s keywords out of ``kwargs`` (which keeps the event's)."""
    return {k: kwargs.pop(k) for k in list(kwargs) if k in _SEND_KEYS}


class FakeOpenAI(RealtimeEndpoint, LocalService):
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
        #: Wakes ``wait_connected`` whenever a request or websocket changes.
        self.changes = Changes()
        #: Calls, recorded requests, scripted failures; ``end_on_refer``,
        #: ``refer_end_delay`` and ``accept_any`` live there and can be changed at any time.
        self.control = CallControl(
            end_call=self._end_call_later,
            notify=self.changes.notify,
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
        self._tasks = Tasks()
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

    async def stop(self) -> None:
        """Close every websocket cleanly, finish background work, stop the server."""
        open_conns = [c for cs in self.connections.values() for c in cs if not c.closed.is_set()]
        await asyncio.gather(*(c.close(1001, "server stopping") for c in open_conns))
        await self.live.stop()
        self.responses.release_delays()
        await self._tasks.cancel()
        await super().stop()

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
        send_kwargs = _send_kwargs(kwargs)
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
        send_kwargs = _send_kwargs(kwargs)
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
