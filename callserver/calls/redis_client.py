"""The Redis client as the registry uses it: how it is built and how one operation runs.

Two rules live here so no caller can forget them: every operation has a deadline (a Redis
that stops answering must not hang a webhook or a call), and an unreachable Redis surfaces as
:class:`~callserver.calls.registry.RegistryUnavailable`, never as a library exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from callserver.calls.registry import RegistryUnavailable

T = TypeVar("T")

UNAVAILABLE_ERRORS = (RedisConnectionError, RedisTimeoutError, TimeoutError, OSError)


def connect(url: str, *, op_timeout_s: float = 1.0, **kwargs: Any) -> Redis:
    """An asyncio client configured the way the registry expects.

    ``str`` responses; socket timeouts so a silent network cannot hang a call; one immediate
    retry, so a pooled connection that went stale while Redis restarted costs nothing.
    Connecting is lazy: nothing is contacted until the first command.
    """
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": op_timeout_s,
        "socket_connect_timeout": op_timeout_s,
        "retry": Retry(NoBackoff(), 1),
        "health_check_interval": 10,
    }
    options.update(kwargs)
    return Redis.from_url(url, **options)


def cancel_count() -> int:
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


def honour_cancellation(before: int, cause: BaseException | None = None) -> None:
    """Re-raise a cancel requested during a Redis operation that the client swallowed.

    Seen with redis-py on Python 3.11: a cancel that races a socket timeout or a retry can end
    up as a normal return or a TimeoutError. A task being cancelled must stop (otherwise a
    shutdown waits forever), not carry on as if Redis had answered or were merely down.
    """
    if cancel_count() > before:
        raise asyncio.CancelledError() from cause


async def run_op(what: str, fn: Callable[[], Awaitable[T]], timeout_s: float) -> T:
    """One Redis operation under a deadline; unreachable or slow -> RegistryUnavailable."""
    before = cancel_count()
    try:
        async with asyncio.timeout(timeout_s):
            result = await fn()
    except UNAVAILABLE_ERRORS as exc:
        honour_cancellation(before, exc)
        detail = str(exc) or type(exc).__name__
        raise RegistryUnavailable(f"redis {what}: {detail}") from exc
    honour_cancellation(before)
    return result
