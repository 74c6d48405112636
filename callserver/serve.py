"""Run the app under uvicorn with telephony-grade signal handling.

uvicorn's own SIGTERM handling closes the listening socket at once, so a webhook arriving
during shutdown would get "connection refused". Instead, the first SIGTERM/SIGINT starts a
drain: readyz turns 503 (load balancers stop routing), new webhooks get 503 (OpenAI
redelivers), live calls run on up to the drain timeout and are then hung up; only then does
uvicorn stop. A second SIGTERM/SIGINT during the drain cuts it short: every live call is hung
up now (bounded), the records and post-call events are written, and the process exits with
:data:`EXIT_FORCED` (or :data:`EXIT_FORCED_INCOMPLETE`). SIGHUP reloads the agent-graph
config.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from types import FrameType

import uvicorn

from callserver.app import Services, create_app
from callserver.config_holder import ConfigHolder
from callserver.gc_policy import CollectorPolicy
from callserver.settings import Settings

log = logging.getLogger(__name__)

EXIT_DRAINED = 0
"""Drained: every call finished, or was hung up at the drain timeout."""
EXIT_FORCED = 4
"""A second signal cut the drain short; every live call was hung up and recorded."""
EXIT_FORCED_INCOMPLETE = 5
"""A second signal cut the drain short and some calls did not end within the bound (with a
shared registry their leases lapse and a survivor hangs them up)."""
GC_CHECK_S = 60.0
"""How often the collector policy's interval is checked (gc_policy.py)."""
ABORT_TIMEOUT_S = 3.0
"""After a second signal: how long hanging up the live calls may take, in total."""


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first exit signal drains calls and whose second one aborts."""

    def __init__(self, config: uvicorn.Config, app_state: object) -> None:
        super().__init__(config)
        self._app_state = app_state
        self._drain_task: asyncio.Task[None] | None = None
        self._abort_task: asyncio.Task[None] | None = None
        self._gc_task: asyncio.Task[None] | None = None
        self._reload_tasks: set[asyncio.Task[object]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.exit_code = EXIT_DRAINED

    def _services(self) -> Services | None:
        return getattr(self._app_state, "services", None)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Called from a plain signal handler: only schedule work onto the loop.

        uvicorn's own handler is used only before the app is up; after that it must not
        run, because it stops listening at once and re-raises the signal at exit (which
        would turn our exit code into "killed by signal").
        """
        loop = self._loop
        if sig == signal.SIGHUP:
            if loop is not None:
                loop.call_soon_threadsafe(self._start_reload)
            return
        if self._services() is None or loop is None:
            super().handle_exit(sig, frame)
            return
        name = signal.Signals(sig).name
        if self._drain_task is None:
            log.warning("signal %s: draining before shutdown (a second signal aborts)", name)
            loop.call_soon_threadsafe(self._start_drain)
        elif self._abort_task is None and not self._drain_task.done():
            log.warning("second signal %s: hanging up live calls and exiting now", name)
            loop.call_soon_threadsafe(self._start_abort)
        else:
            log.warning("signal %s: already exiting", name)

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

    def _start_abort(self) -> None:
        services = self._services()
        drain = self._drain_task
        if self._abort_task is None and services is not None and drain and not drain.done():
            self._abort_task = asyncio.get_running_loop().create_task(self._abort(services))

    async def _drain(self, services: Services) -> None:
        try:
            await services.manager.drain(services.settings.drain_timeout_s)
        finally:
            self.should_exit = True

    async def _abort(self, services: Services) -> None:
        """Hang up everything live (bounded); the lifespan then writes what is left."""
        try:
            complete = await services.manager.abort(ABORT_TIMEOUT_S)
            self.exit_code = EXIT_FORCED if complete else EXIT_FORCED_INCOMPLETE
        except Exception:
            log.exception("abort failed")
            self.exit_code = EXIT_FORCED_INCOMPLETE
        finally:
            self.should_exit = True

    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[override]
        await super().startup(sockets)
        # Everything loaded by now (the SDK, pydantic schemas, the config, warm-up) lives for
        # the whole process: frozen out of the collector's view; full collections then run
        # after call turnover, not heap growth (gc_policy.py: no pauses while calls are up).
        loop = self._loop = asyncio.get_running_loop()
        services = self._services()
        if services is not None:
            manager = services.manager
            policy = CollectorPolicy(lambda: manager.active_count)
            policy.install()
            manager.end_listeners.append(policy.call_ended)
            self._gc_task = loop.create_task(self._collect_periodically(policy), name="gc")
        try:
            loop.add_signal_handler(signal.SIGHUP, self.handle_exit, signal.SIGHUP, None)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-POSIX
            pass

    @staticmethod
    async def _collect_periodically(policy: CollectorPolicy) -> None:
        while True:
            await asyncio.sleep(GC_CHECK_S)
            policy.maybe_collect(timer=True)

    async def shutdown(self, sockets: list | None = None) -> None:  # type: ignore[override]
        if self._abort_task is not None:
            # Nothing is worth waiting for any more: keep-alive clients get a short grace.
            self.config.timeout_graceful_shutdown = min(
                self.config.timeout_graceful_shutdown or 1, 1
            )
        await super().shutdown(sockets)
        for task in (self._drain_task, self._abort_task, self._gc_task):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)


def serve(settings: Settings, config: ConfigHolder, host: str, port: int) -> int:
    """Blocking: run the service until drained; returns the process exit code."""
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
    return server.exit_code
