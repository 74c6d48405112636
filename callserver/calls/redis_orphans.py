"""Calls whose owner died: found by their lapsed lease, claimed by exactly one survivor.
Part of :class:`~callserver.calls.redis_registry.RedisRegistry`.

A live call's record carries a lease its owner renews. When an owner stops renewing (a
crash, a kill -9, a partition), its calls' leases lapse and every survivor's sweep sees
them; ``CLAIM_ORPHAN`` makes one of them the claimant, atomically. The claimant adopts the
call (``calls/moves.py``) or hangs it up and records it ended as ``owner_lost``; when the
hangup fails it puts the call back so the next sweep, anyone's, tries again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from callserver.calls import redis_codec, redis_scripts
from callserver.calls.records import CallState
from callserver.calls.redis_sids import Op

WriteEnded = Callable[[str, dict[str, str], list[str]], Awaitable[None]]


class RedisOrphans:
    """The orphan sweep's view of Redis: list, claim, give back, record as ended."""

    def __init__(
        self,
        client: Redis,
        key: Callable[..., str],
        op: Op,
        *,
        owns: Callable[[str], bool],
        ended_ttl_s: int,
        write_ended: WriteEnded,
        release_slot: Callable[[str], Awaitable[None]],
    ) -> None:
        self._client = client
        self._key = key
        self._op = op
        self._owns = owns
        self._ended_ttl = ended_ttl_s
        self._write_ended = write_ended
        self._release_slot = release_slot
        self._claim = client.register_script(redis_scripts.CLAIM_ORPHAN)
        self._expired = client.register_script(redis_scripts.EXPIRED)

    async def expired(self, limit: int = 100) -> list[str]:
        """Calls of other instances whose lease has expired (their owner looks dead)."""
        live = self._key("live")
        ids: list[str] = await self._op(
            "list expired", lambda: self._expired(keys=[live], args=[limit])
        )
        return [i for i in ids if not self._owns(i)]

    async def claim(self, call_id: str) -> int:
        """Atomically take over an expired call; the sweep attempt number, or 0 if not ours."""
        keys = [self._key("live"), self._key("call:", call_id)]
        attempts = int(
            await self._op(
                "claim orphan", lambda: self._claim(keys=keys, args=[call_id, self._ended_ttl])
            )
        )
        return max(attempts, 0)

    async def requeue(self, call_id: str) -> None:
        """Put a claimed orphan back as expired, so the next sweep (anyone's) retries it."""
        live = self._key("live")
        await self._op("requeue orphan", lambda: self._client.zadd(live, {call_id: 0}))

    async def finish(self, call_id: str, *, note: str | None = None) -> None:
        """Record a claimed orphan as ended with reason ``owner_lost`` and free its slot."""
        key = self._key("call:", call_id)
        fields = await self._op("read orphan", lambda: self._client.hgetall(key))
        record = redis_codec.decode(fields) if fields else None
        data = fields.get("data") if fields else None
        if record is not None and note:
            record.errors.append(note)
            data = redis_codec.encode(record)
        ended = {"state": CallState.ENDED.value, "end_reason": "owner_lost"}
        if data:
            ended["data"] = data
        sids = [record.twilio_call_sid] if record and record.twilio_call_sid else []
        await self._write_ended(call_id, ended, sids)  # other links expire with their TTL
        await self._release_slot(call_id)
