"""Handing a Twilio-bridged leg to the instance that placed the call.

The instance that dialed owns the outbound call (its task waits for the bridge), but OpenAI's
webhook for the bridged SIP leg may reach any instance. The board carries the verified
incoming call to the waiter: in process when the owner is this instance, through a short
Redis list (``<prefix>bridge:<attempt id>``) otherwise, which the owner's one poller drains
for every call it is waiting on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from typing import TYPE_CHECKING, Any

from callserver.calls.registry import RegistryUnavailable
from callserver.webhooks.openai import IncomingCall

if TYPE_CHECKING:  # the redis package is imported only when REDIS_URL is set
    from redis.asyncio import Redis

log = logging.getLogger(__name__)

POLL_S = 0.05
ENTRY_TTL_S = 120
_FIELDS = (
    "call_id", "event_id", "webhook_id", "from_uri", "to_uri", "caller", "dialed",
    "sip_call_id", "twilio_call_sid", "engine", "event_type", "sip_media_security",
)  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class Bridged:
    """A bridged leg for an outbound call: the incoming call and who answered (AMD)."""

    call: IncomingCall
    answered_by: str | None


def encode(bridged: Bridged) -> str:
    data: dict[str, Any] = {name: getattr(bridged.call, name) for name in _FIELDS}
    data["sip_headers"] = [list(pair) for pair in bridged.call.sip_headers]
    data["answered_by"] = bridged.answered_by
    return json.dumps(data)


def decode(raw: str) -> Bridged:
    data = json.loads(raw)
    headers = tuple((str(k), str(v)) for k, v in data.get("sip_headers") or [])
    call = IncomingCall(**{name: data.get(name) for name in _FIELDS}, sip_headers=headers)
    return Bridged(call, data.get("answered_by"))


class BridgeBoard:
    """Waiters by attempt id, here; optionally a Redis list per attempt for the others."""

    def __init__(self, redis: Redis | None = None, prefix: str = "callserver:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._waiting: dict[str, asyncio.Future[Bridged]] = {}
        self._poller: asyncio.Task[None] | None = None

    def _key(self, attempt_id: str) -> str:
        return f"{self._prefix}bridge:{attempt_id}"

    def is_waiting(self, attempt_id: str) -> bool:
        return attempt_id in self._waiting

    async def wait(self, attempt_id: str, timeout_s: float) -> Bridged | None:
        """The bridged leg of ``attempt_id``, or None after ``timeout_s``."""
        future: asyncio.Future[Bridged] = asyncio.get_running_loop().create_future()
        self._waiting[attempt_id] = future
        if self._redis is not None and (self._poller is None or self._poller.done()):
            self._poller = asyncio.create_task(self._poll(), name="bridge-poller")
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            return None
        finally:
            self._waiting.pop(attempt_id, None)

    async def post(self, attempt_id: str, bridged: Bridged) -> bool:
        """Deliver a bridged leg: to the local waiter, else (with Redis) to the owner's list.
        False when nobody here waits for it and there is no Redis to reach the others."""
        future = self._waiting.get(attempt_id)
        if future is not None:
            if not future.done():
                future.set_result(bridged)
            return True
        if self._redis is None:
            return False
        redis = self._redis
        key = self._key(attempt_id)

        async def push() -> None:
            async with redis.pipeline(transaction=True) as pipe:
                pipe.rpush(key, encode(bridged))
                pipe.expire(key, ENTRY_TTL_S)
                await pipe.execute()

        from callserver.calls.redis_client import run_op

        await run_op("post bridge", push, 1.0)
        return True

    async def _poll(self) -> None:
        """While anyone waits here: take their entries from Redis every ``POLL_S``."""
        from callserver.calls.redis_client import run_op

        assert self._redis is not None
        redis = self._redis
        while self._waiting:
            ids = list(self._waiting)

            async def take(ids: list[str] = ids) -> list[Any]:
                async with redis.pipeline(transaction=False) as pipe:
                    for attempt_id in ids:
                        pipe.lpop(self._key(attempt_id))
                    return await pipe.execute()

            try:
                entries = await run_op("take bridges", take, 1.0)
            except RegistryUnavailable as exc:
                log.warning("bridge poll failed: %s", exc)
                entries = [None] * len(ids)
            for attempt_id, raw in zip(ids, entries, strict=True):
                future = self._waiting.get(attempt_id)
                if raw and future is not None and not future.done():
                    try:
                        future.set_result(decode(raw))
                    except (ValueError, TypeError, KeyError):
                        log.error("bridge entry unreadable", extra={"call_id": attempt_id})
            await asyncio.sleep(POLL_S)

    async def aclose(self) -> None:
        for future in self._waiting.values():
            future.cancel()
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._poller
