"""Run the app under uvicorn with telephony-grade signal handling.

uvicorn's own SIGTERM handling closes the listening socket at once, so a webhook arriving
during shutdown would get "connection refused". Instead, the first SIGTERM/SIGINT starts a
drain: readyz turns 503 (load balancers stop routing), new webhooks get 503 (OpenAI
redelivers), live calls run on up to the drain timeout and are then hung up; only then does
uvicorn stop. A second signal exits at once. SIGHUP reloads the agent-graph config.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from types import FrameType

import uvicorn

from callserver.app import Services, create_app
from callserver.config_holder import ConfigHolder
from callserver.settings import Settings

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first exit signal drains calls before shutting down."""

    def __init__(self, config: uvicorn.Config, app_state: object) -> None:
        super().__init__(config)
        self._app_state = app_state
        self._drain_task: asyncio.Task[None] | None = None
        self._reload_tasks: set[asyncio.Task[object]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _services(self) -> Services | None:
        return getattr(self._app_state, "services", None)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Called from a plain signal handler: only schedule work onto the loop."""
        loop = self._loop
        if sig == signal.SIGHUP:
            if loop is not None:
                loop.call_soon_threadsafe(self._start_reload)
            return
        if self._drain_task is not None or self._services() is None or loop is None:
            super().handle_exit(sig, frame)
            return
        log.warning("signal %s: draining before shutdown", signal.Signals(sig).name)
        loop.call_soon_threadsafe(self._start_drain)

    def _start_reload(self) -> None:
        services = self._services()
        if services is not None:
            task = asyncio.get_running_loop().create_task(services.config.reload())
            self._reload_tasks.add(task)
            task.add_done_callback(self._reload_tasks.discard)

    def _start_drain(self) -> None:
        services = self._services()
        if self._drain_task is None and services is not None:
            self._drain_task = asyncio.get_running_loop().create_task(self._drain(services))

    async def _drain(self, services: Services) -> None:
        try:
            await services.manager.drain(services.settings.drain_timeout_s)
        finally:
            self.should_exit = True

    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[override]
        await super().startup(sockets)
        # Everything loaded by now (the SDK, pydantic schemas, the config, warm-up) lives for
        # the whole process: move it out of the collector's generations so full collections
        # scan only per-call objects, keeping GC pauses off the accept path.
        gc.collect()
        gc.freeze()
        loop = self._loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, self.handle_exit, signal.SIGHUP, None)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-POSIX
            pass


def serve(settings: Settings, config: ConfigHolder, host: str, port: int) -> None:
    """Blocking: run the service until drained."""
    app = create_app(settings, config)
    uv_config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = DrainingServer(uv_config, app.state)
    server.run()
