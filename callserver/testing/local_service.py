"""What every local fake or receiver served in the current event loop shares: a start, a
stop, and ``async with`` (the replayer too, which runs a fake and a callserver)."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from callserver.testing.fake_server import InLoopServer

__all__ = ["AsyncService", "LocalService"]


class AsyncService:
    """Anything a test starts and stops: ``async with`` is :meth:`start`, then :meth:`stop`
    however the block ends (so every fake and the replayer spell it once)."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

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


class LocalService(AsyncService):
    """Base for a service on an :class:`InLoopServer` (set ``self._server``); subclasses
    extend :meth:`stop` to let their own work go first."""

    _server: InLoopServer

    async def start(self) -> None:
        """Bind (ephemeral port unless given) and serve in the current event loop."""
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop()
