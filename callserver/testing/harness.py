"""Run a real callserver (uvicorn, real sockets) inside the current event loop.

For tests, benchmarks and the offline demo: point it at a :class:`FakeOpenAI` through
``Settings(openai_base_url=fake.base_url, ...)`` and talk to it over HTTP like OpenAI would.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from callserver.app import Services, create_app
from callserver.config_holder import ConfigHolder
from callserver.settings import Settings

TEST_WEBHOOK_SECRET = "whsec_" + "dGVzdC1zZWNyZXQtZm9yLWNhbGxzZXJ2ZXItdGVzdHM="
"""A fixed, obviously-fake signing secret for local tests and demos."""


@dataclass
class RunningServer:
    url: str
    app: Starlette
    server: uvicorn.Server

    @property
    def services(self) -> Services:
        return self.app.state.services

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/webhooks/openai"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_settings(base_url: str, config_path: Path | str, **overrides: object) -> Settings:
    """Settings for a local run against a fake OpenAI."""
    values: dict[str, object] = {
        "openai_api_key": "sk-test-not-a-real-key",
        "openai_base_url": base_url,
        "webhook_secret": TEST_WEBHOOK_SECRET,
        "config_path": Path(config_path),
        "drain_timeout_s": 0.2,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without signal handling: the host program (pytest, a bench) owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def run_callserver(
    settings: Settings, *, config: ConfigHolder | None = None, port: int = 0
) -> AsyncIterator[RunningServer]:
    """Start callserver on 127.0.0.1; stop (with its drain) on exit."""
    app = create_app(settings, config)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    uv_config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=2
    )
    server = _EmbeddedServer(uv_config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="callserver-uvicorn")
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("callserver exited during start-up")
                await asyncio.sleep(0.01)
        host, bound = sock.getsockname()[:2]
        yield RunningServer(url=f"http://{host}:{bound}", app=app, server=server)
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            async with asyncio.timeout(15):
                await task
        if not task.done():
            task.cancel()
        sock.close()
