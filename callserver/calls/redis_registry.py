"""The call registry on Redis, shared by several callserver instances.

Each instance owns the calls it accepted: it keeps their live :class:`CallRecord` objects in
memory (the manager mutates them) and mirrors them to Redis with a lease that the
:class:`~callserver.calls.coordination.Coordinator` renews. Other instances read snapshots.

Failure policy, so that losing Redis never takes calls down with it:

- Decisions that must be global (webhook/call claims, concurrency slots) and reads of calls
  owned elsewhere raise :class:`RegistryUnavailable` when Redis does not answer in time
  (unless ``local_fallback`` is set: then claims and slots are decided in-process).
- Writes about this instance's own calls (``put``, ``finished``, ``release_slot``,
  ``link_call_sid``) never raise: the local state is authoritative and
  :meth:`RedisRegistry.renew_leases` re-syncs it once Redis is back.

The client must be created with ``decode_responses=True``: use
:func:`callserver.calls.redis_client.connect`.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio import Redis

from callserver.calls import redis_codec, redis_scripts
from callserver.calls.records import CallRecord, CallState
from callserver.calls.redis_client import run_op
from callserver.calls.redis_moves import RedisMoves
from callserver.calls.redis_orphans import RedisOrphans
from callserver.calls.redis_sids import RedisCallSids
from callserver.calls.redis_slots import RedisSlots
from callserver.calls.registry import InMemoryRegistry, RegistryUnavailable, min_cap

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class CallLocation:
    """Where a call lives, as Redis sees it: who owns it and whether its lease is current."""

    owner: str | None
    state: str | None
    lease_alive: bool


class RedisRegistry:
    """:class:`~callserver.calls.registry.CallRegistry` on a (single, non-cluster) Redis."""

    def __init__(
        self,
        client: Redis,
        *,
        instance_id: str,
        max_calls: int | None,
        dedupe_ttl_s: float,
        instance_max_calls: int | None = None,
        lease_s: float = 15.0,
        key_prefix: str = "callserver:",
        op_timeout_s: float = 1.0,
        ended_ttl_s: float = 3600.0,
        call_sid_ttl_s: float = 6 * 3600.0,
        keep_ended: int = 1000,
        local_fallback: bool = False,
    ) -> None:
        self.client = client
        self.instance_id = instance_id
        self.lease_s = lease_s
        self.prefix = key_prefix
        self._dedupe_ms = max(int(dedupe_ttl_s * 1000), 1)
        self._lease_ms = max(int(lease_s * 1000), 1)
        self._op_timeout = op_timeout_s
        self._ended_ttl = max(int(ended_ttl_s), 1)
        self._keep_ended = keep_ended
        self._owned: dict[str, CallRecord] = {}
        self._ended: collections.OrderedDict[str, CallRecord] = collections.OrderedDict()
        self._pending_finish: dict[str, tuple[CallRecord, list[str]]] = {}
        self._lost: set[str] = set()
        self._fallback = (
            InMemoryRegistry(
                max_calls=min_cap(max_calls, instance_max_calls), dedupe_ttl_s=dedupe_ttl_s
            )
            if local_fallback
            else None
        )
        self.sids = RedisCallSids(
            client, self._key, self._op, sid_ttl_s=call_sid_ttl_s, fallback=self._fallback
        )
        self.slots = RedisSlots(
            client,
            self._key,
            self._op,
            prefix=key_prefix,
            lease_ms=self._lease_ms,
            fleet_max=max_calls,
            instance_max=instance_max_calls,
            fallback=self._fallback,
        )
        self.moves = RedisMoves(
            client, self._key, self._op, instance_id=instance_id, lease_ms=self._lease_ms
        )
        self.orphans = RedisOrphans(
            client,
            self._key,
            self._op,
            owns=lambda call_id: call_id in self._owned,
            ended_ttl_s=self._ended_ttl,
            write_ended=self._write_ended,
            release_slot=self.slots.release_remote,
        )
        self._put = client.register_script(redis_scripts.PUT_RECORD)
        self._renew = client.register_script(redis_scripts.RENEW)
        self._locate = client.register_script(redis_scripts.LOCATE)

    # ---- keys and the one place Redis errors are translated --------------------------------

    def _key(self, *parts: str) -> str:
        return self.prefix + "".join(parts)

    @property
    def _live_key(self) -> str:
        return self._key("live")

    def end_channel(self, instance_id: str) -> str:
        """Pub/sub channel on which an instance receives end requests for its calls."""
        return self._key("end:", instance_id)

    async def _op(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        return await run_op(what, fn, self._op_timeout)

    # ---- claims and slots (global decisions) -----------------------------------------------

    async def claim_delivery(self, webhook_id: str) -> bool:
        try:
            return await self._claim(self._key("d:", webhook_id), "claim delivery")
        except RegistryUnavailable:
            if self._fallback is None:
                raise
            log.warning("redis down: webhook delivery deduplicated in-process only")
            return await self._fallback.claim_delivery(webhook_id)

    async def claim_call(self, call_id: str) -> bool:
        try:
            return await self._claim(self._key("c:", call_id), "claim call")
        except RegistryUnavailable:
            if self._fallback is None:
                raise
            log.warning("redis down: call claimed in-process only", extra={"call_id": call_id})
            return await self._fallback.claim_call(call_id)

    async def _claim(self, key: str, what: str) -> bool:
        result = await self._op(
            what, lambda: self.client.set(key, self.instance_id, nx=True, px=self._dedupe_ms)
        )
        return bool(result)

    async def acquire_slot(self, call_id: str, graph: str, graph_limit: int | None) -> bool:
        return await self.slots.acquire(call_id, graph, graph_limit)

    async def release_slot(self, call_id: str) -> None:
        await self.slots.release(call_id)

    def slots_in_use(self) -> int:
        """Slots held by this instance (the global count is in Redis)."""
        return len(self.slots.held)

    # ---- records ---------------------------------------------------------------------------

    async def put(self, record: CallRecord) -> None:
        if record.state is not CallState.ENDED:
            self._owned[record.call_id] = record
        try:
            await self._write(record)
        except RegistryUnavailable as exc:
            log.warning("record write deferred: %s", exc, extra={"call_id": record.call_id})

    async def _write(self, record: CallRecord) -> None:
        keys = [self._key("call:", record.call_id), self._live_key]
        args = [
            record.call_id,
            self.instance_id,
            record.state.value,
            record.end_reason or "",
            redis_codec.encode(record),
            self._lease_ms,
        ]
        await self._op("put record", lambda: self._put(keys=keys, args=args))

    async def get(self, call_id: str) -> CallRecord | None:
        local = self._owned.get(call_id) or self._ended.get(call_id)
        if local is not None:
            return local
        fields = await self._op(
            "get record", lambda: self.client.hgetall(self._key("call:", call_id))
        )
        return redis_codec.decode(fields) if fields else None

    async def live_calls(self) -> list[CallRecord]:
        """Every instance's live calls: this instance's own objects, snapshots of the rest."""
        ids: list[str] = await self._op(
            "list calls", lambda: self.client.zrange(self._live_key, 0, -1)
        )
        remote = [i for i in ids if i not in self._owned]

        async def read_all() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                for call_id in remote:
                    pipe.hgetall(self._key("call:", call_id))
                return await pipe.execute()

        rows = await self._op("read calls", read_all) if remote else []
        records = list(self._owned.values())
        for fields in rows:
            record = redis_codec.decode(fields) if fields else None
            if record is not None and record.state is not CallState.ENDED:
                records.append(record)
        return records

    async def finished(self, record: CallRecord) -> None:
        call_id = record.call_id
        if self._owned.pop(call_id, None) is None:
            # A snapshot of another instance's call: only its owner may end it.
            log.error(
                "finished() for a call this instance does not own", extra={"call_id": call_id}
            )
            return
        self._lost.discard(call_id)
        self._ended[call_id] = record
        while len(self._ended) > self._keep_ended:
            self._ended.popitem(last=False)
        sids = self.sids.unlink_call(call_id)
        try:
            await self._write_finished(record, sids)
        except RegistryUnavailable as exc:
            log.warning("end record write deferred: %s", exc, extra={"call_id": call_id})
            self._pending_finish[call_id] = (record, sids)

    async def _write_finished(self, record: CallRecord, sids: list[str]) -> None:
        fields = {
            "owner": self.instance_id,
            "state": record.state.value,
            "end_reason": record.end_reason or "",
            "data": redis_codec.encode(record),
        }
        await self._write_ended(record.call_id, fields, sids)

    async def _write_ended(self, call_id: str, fields: dict[str, str], sids: list[str]) -> None:
        """Mark a call ended (kept ``ended_ttl_s`` for lookups), off the live set and its
        CallSid links."""
        key = self._key("call:", call_id)

        async def write() -> None:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={**fields, "ended_at": str(time.time())})
                pipe.expire(key, self._ended_ttl)
                pipe.zrem(self._live_key, call_id)
                for sid in sids:
                    pipe.delete(self._key("sid:", sid))
                await pipe.execute()

        await self._op("finish record", write)

    async def link_call_sid(self, call_sid: str, call_id: str) -> None:
        await self.sids.link(call_sid, call_id)

    async def by_call_sid(self, call_sid: str) -> CallRecord | None:
        call_id = await self.sids.lookup(call_sid)
        if call_id is None:
            return None
        record = await self.get(call_id)
        return record if record is not None and record.live else None

    async def remember_status(self, call_sid: str, status: str) -> bool:
        return await self.sids.remember(call_sid, status)

    async def status_of(self, call_sid: str) -> str | None:
        return await self.sids.status_of(call_sid)

    async def forget_status(self, call_sid: str) -> None:
        await self.sids.forget(call_sid)

    async def healthy(self) -> tuple[bool, str]:
        try:
            await run_op("ping", self.client.ping, min(self._op_timeout, 0.5))
        except RegistryUnavailable as exc:
            return False, f"redis unreachable ({exc})"
        return True, f"redis ok (instance {self.instance_id})"

    def is_local(self, call_id: str) -> bool:
        return call_id in self._owned

    async def owner_of(self, call_id: str) -> str | None:
        if call_id in self._owned:
            return self.instance_id
        where = await self.locate(call_id)
        if where is None or not where.lease_alive or where.state == CallState.ENDED.value:
            return None
        return where.owner

    async def adopt(self, record: CallRecord, graph: str) -> None:
        """Own a call that moved here (its owner in Redis is already this instance): it is
        renewed, routed to and ended here from now on; its slot moves with it."""
        self._owned[record.call_id] = record
        self._lost.discard(record.call_id)
        self.slots.held[record.call_id] = graph

    async def forget(self, call_id: str) -> None:
        """No longer own a call another instance took over: no write, its owner renews it."""
        self._owned.pop(call_id, None)
        self.slots.held.pop(call_id, None)

    # ---- used by the Coordinator -----------------------------------------------------------

    async def locate(self, call_id: str) -> CallLocation | None:
        """Owner, state and lease of a call; None if Redis knows nothing of it."""
        keys = [self._key("call:", call_id), self._live_key]
        owner, state, alive = await self._op(
            "locate call", lambda: self._locate(keys=keys, args=[call_id])
        )
        if not owner and not state and not int(alive):
            return None
        return CallLocation(owner or None, state or None, bool(int(alive)))

    async def renew_leases(self) -> list[str]:
        """Flush deferred writes, re-assert this instance's calls and extend their leases.

        Returns calls this instance newly lost (swept as orphans by a survivor while we could
        not renew): the caller should end them locally. Raises RegistryUnavailable.
        """
        await self._flush_pending()
        await self.moves.heartbeat(len(self._owned))
        if not self._owned:
            return []
        args: list[Any] = [self.instance_id, self._lease_ms, self.prefix]
        for call_id, record in list(self._owned.items()):
            args += [
                call_id,
                record.state.value,
                record.end_reason or "",
                redis_codec.encode(record),
                self.slots.held.get(call_id, ""),
            ]
        keys = [self._live_key, self._key("slots"), self._key("slot_graph")]
        lost: list[str] = await self._op("renew leases", lambda: self._renew(keys=keys, args=args))
        fresh = [c for c in lost if c not in self._lost and c in self._owned]
        self._lost.update(fresh)
        return fresh

    async def _flush_pending(self) -> None:
        await self.slots.flush_pending()
        await self.sids.flush_pending()
        for call_id, (record, sids) in list(self._pending_finish.items()):
            await self._write_finished(record, sids)
            self._pending_finish.pop(call_id, None)

    async def publish_request(self, owner: str, request: dict[str, str]) -> int:
        """Send a request to ``owner``'s channel; the number of subscribers that received it."""
        message = json.dumps({**request, "from": self.instance_id})
        channel = self.end_channel(owner)
        return int(await self._op("publish", lambda: self.client.publish(channel, message)))

    async def aclose(self) -> None:
        """Close the Redis client (its connection pool)."""
        await self.client.aclose()
