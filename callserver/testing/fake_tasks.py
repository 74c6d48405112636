"""Background work and change notification, as every fake with scripted timing needs them.

A fake answers a request first and plays what follows (a call ending after a refer, a
callee ringing) as a task of its own; those tasks must die with the fake, or a test's
loop closes under them. Tests wait for what the fake saw (a websocket, a sideband) by
sleeping on one condition that every handler pokes, rather than polling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["Changes", "Tasks"]

T = TypeVar("T")


class Tasks:
    """Tasks a fake owns: started without being awaited, cancelled when it stops."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task of the fake (a reference is kept until it is done)."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel(self) -> None:
        """Cancel every task still running and wait for them to finish."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Changes:
    """One condition for "the fake saw something": handlers notify, waiters re-check."""

    def __init__(self) -> None:
        self._condition = asyncio.Condition()

    async def notify(self) -> None:
        async with self._condition:
            self._condition.notify_all()

    async def wait_for(self, find: Callable[[], T | None], timeout: float) -> T:
        """What ``find`` returns once it is not None; TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout), self._condition:
            while (found := find()) is None:
                await self._condition.wait()
            return found
