"""Serve an ASGI app with uvicorn inside the current event loop, and abort its sockets.

Tests need the fake on real sockets but in *their* loop (so it shares timeouts and
cancellation with the code under test), and need to cut a websocket without a close frame,
which neither Starlette nor uvicorn exposes: ``abort`` finds the transport by peer address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from contextvars import ContextVar

import uvicorn
from starlette.types import ASGIApp
from starlette.websockets import WebSocket

__all__ = ["InLoopServer", "mark_denied"]

TIMEOUT = 5.0
#: uvicorn's websockets-based protocol; the legacy one warns about its deprecation since 0.35.
WS_IMPL = (
    "websockets-sansio" if "websockets-sansio" in uvicorn.config.WS_PROTOCOLS else "websockets"
)


_denied: ContextVar[bool] = ContextVar("callserver_fake_ws_denied", default=False)
_HANDSHAKE_LOG = "ASGI callable returned without completing handshake."


def mark_denied() -> None:
    """Call before ``send_denial_response``: uvicorn's sans-io protocol then wrongly logs an
    error that the handshake never completed; this silences it for this connection only
    (the flag lives in the connection task's context)."""
    _denied.set(True)


class _DenialLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (_denied.get() and record.msg == _HANDSHAKE_LOG)


_denial_filter = _DenialLogFilter()


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host (pytest, or a CLI)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.exit_requested = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        """Wait for ``stop()`` instead of polling every 0.1 s: tests start and stop a lot."""
        await self.on_tick(0)
        await self.exit_requested.wait()


class InLoopServer:
    """One uvicorn server for ``app`` on ``host:port`` (0 = ephemeral), run as a task."""

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    async def start(self) -> None:
        """Bind, then serve in the current loop; returns once the server accepts connections."""
        if self._task is not None:
            raise RuntimeError("server already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            ws=WS_IMPL,
            lifespan="off",
            log_level="warning",
            access_log=False,
            ws_ping_interval=None,
            timeout_graceful_shutdown=2,
        )
        logging.getLogger("uvicorn.error").addFilter(_denial_filter)  # idempotent
        self._server = server = _Server(config)
        self._task = task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            async with asyncio.timeout(TIMEOUT):
                while not server.started:
                    if task.done():
                        task.result()
                        raise RuntimeError("server exited during startup")
                    await asyncio.sleep(0.005)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop accepting, let uvicorn close what is left, and await the task (bounded)."""
        server, task = self._server, self._task
        self._server = self._task = None
        if server is None or task is None:
            return
        server.should_exit = True
        server.exit_requested.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), TIMEOUT)
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def abort(self, websocket: WebSocket) -> bool:
        """Abort the TCP transport under ``websocket`` (no close frame); False if not found."""
        if self._server is None or websocket.client is None:
            return False
        peer = (websocket.client.host, websocket.client.port)
        for protocol in list(self._server.server_state.connections):
            transport = getattr(protocol, "transport", None)
            if transport is None:
                continue
            peername = transport.get_extra_info("peername")
            if peername and tuple(peername[:2]) == peer:
                transport.abort()
                return True
        return False
