"""Twilio CallSids in Redis: which call a CallSid names, and terminal statuses remembered
before the call exists. Part of :class:`~callserver.calls.redis_registry.RedisRegistry`.

Twilio's status callback for a number may reach any instance, and so may OpenAI's webhook
for the same call: both the CallSid -> call link and the "this caller already hung up"
memory must be shared for either instance to act on the other's knowledge.

Keys under the registry's prefix ``P``: ``P sid:<CallSid>`` -> call id (every SID a call is
known by: Twilio's ``X-Twilio-CallSid`` and our ``X-Callserver-CallSid``), and
``P tstatus:<CallSid>`` -> terminal status (SET NX: the first status wins).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from callserver.calls.registry import InMemoryRegistry, RegistryUnavailable
from callserver.calls.status_memory import DEFAULT_STATUS_TTL_S

log = logging.getLogger(__name__)

Op = Callable[[str, Callable[[], Awaitable[Any]]], Awaitable[Any]]


class RedisCallSids:
    """CallSid links (this instance's calls kept locally too) and the status memory.

    Links of this instance's own calls never fail: a link Redis did not take is retried by
    :meth:`flush_pending` (the lease renewal). The status memory is a shared decision, so it
    raises :class:`RegistryUnavailable` like claims do, unless ``fallback`` (the registry's
    in-process stand-in when ``CALLSERVER_REDIS_LOCAL_FALLBACK`` is set) takes over.
    """

    def __init__(
        self,
        client: Redis,
        key: Callable[..., str],
        op: Op,
        *,
        sid_ttl_s: float,
        status_ttl_s: float = DEFAULT_STATUS_TTL_S,
        fallback: InMemoryRegistry | None = None,
    ) -> None:
        self._client = client
        self._key = key
        self._op = op
        self._sid_ms = max(int(sid_ttl_s * 1000), 1)
        self._status_ms = max(int(status_ttl_s * 1000), 1)
        self._fallback = fallback
        self._local: dict[str, str] = {}
        self._of_call: dict[str, list[str]] = {}
        self._pending: set[str] = set()

    # ---- links ----------------------------------------------------------------------------

    async def link(self, call_sid: str, call_id: str) -> None:
        self._local[call_sid] = call_id
        self._of_call.setdefault(call_id, []).append(call_sid)
        try:
            await self._write(call_sid, call_id)
        except RegistryUnavailable as exc:
            log.warning("CallSid link deferred: %s", exc, extra={"call_id": call_id})
            self._pending.add(call_sid)

    async def _write(self, call_sid: str, call_id: str) -> None:
        key = self._key("sid:", call_sid)
        await self._op("link CallSid", lambda: self._client.set(key, call_id, px=self._sid_ms))

    async def lookup(self, call_sid: str) -> str | None:
        """The call id a CallSid is linked to (this instance's first, then Redis)."""
        call_id = self._local.get(call_sid)
        if call_id is None:
            key = self._key("sid:", call_sid)
            call_id = await self._op("find CallSid", lambda: self._client.get(key))
        return call_id

    def unlink_call(self, call_id: str) -> list[str]:
        """Forget a finished call's links here; returns its SIDs for the caller to delete
        from Redis together with the end record."""
        sids = [s for s in self._of_call.pop(call_id, ()) if self._local.get(s) == call_id]
        for sid in sids:
            del self._local[sid]
            self._pending.discard(sid)
        return sids

    async def flush_pending(self) -> None:
        for call_sid in list(self._pending):
            call_id = self._local.get(call_sid)
            if call_id is not None:
                await self._write(call_sid, call_id)
            self._pending.discard(call_sid)

    # ---- terminal statuses ----------------------------------------------------------------

    async def remember(self, call_sid: str, status: str) -> bool:
        key = self._key("tstatus:", call_sid)
        try:
            return bool(
                await self._op(
                    "remember status",
                    lambda: self._client.set(key, status, nx=True, px=self._status_ms),
                )
            )
        except RegistryUnavailable:
            if self._fallback is None:
                raise
            log.warning("redis down: Twilio status remembered in-process only")
            return await self._fallback.remember_status(call_sid, status)

    async def status_of(self, call_sid: str) -> str | None:
        key = self._key("tstatus:", call_sid)
        try:
            status = await self._op("read status", lambda: self._client.get(key))
        except RegistryUnavailable:
            if self._fallback is None:
                raise
            return await self._fallback.status_of(call_sid)
        if status is None and self._fallback is not None:
            return await self._fallback.status_of(call_sid)  # remembered during an outage
        return status

    async def forget(self, call_sid: str) -> None:
        """Best effort (a status left behind expires with its TTL)."""
        if self._fallback is not None:
            await self._fallback.forget_status(call_sid)
        key = self._key("tstatus:", call_sid)
        try:
            await self._op("forget status", lambda: self._client.delete(key))
        except RegistryUnavailable as exc:
            log.warning("could not forget a Twilio status: %s", exc)
