"""Concurrency slots in Redis: this instance's cap and the fleet's. Part of
:class:`~callserver.calls.redis_registry.RedisRegistry`.

Two caps, because they protect different things: ``CALLSERVER_MAX_CALLS`` is what one
process can carry (CPU, memory, sockets), so each instance counts its own slots;
``CALLSERVER_FLEET_MAX_CALLS`` is what the OpenAI account allows, so the slots of every
instance are counted together, atomically, in Redis (``ACQUIRE_SLOT``). A slot is held
under a lease the coordinator renews, so a dead instance's slots come back by themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from redis.asyncio import Redis

from callserver.calls import redis_scripts
from callserver.calls.redis_sids import Op
from callserver.calls.registry import InMemoryRegistry, RegistryUnavailable

log = logging.getLogger(__name__)


class RedisSlots:
    """The slots this instance holds, mirrored in Redis's fleet-wide slot set."""

    def __init__(
        self,
        client: Redis,
        key: Callable[..., str],
        op: Op,
        *,
        prefix: str,
        lease_ms: int,
        fleet_max: int | None,
        instance_max: int | None,
        fallback: InMemoryRegistry | None = None,
    ) -> None:
        self._key = key
        self._op = op
        self._prefix = prefix
        self._lease_ms = lease_ms
        self.fleet_max = fleet_max
        self.instance_max = instance_max
        self._fallback = fallback
        self.held: dict[str, str] = {}
        """call id -> graph of every slot this instance holds."""
        self._acquiring: set[str] = set()
        self._pending_release: set[str] = set()
        self._acquire = client.register_script(redis_scripts.ACQUIRE_SLOT)
        self._release = client.register_script(redis_scripts.RELEASE_SLOT)

    async def acquire(self, call_id: str, graph: str, graph_limit: int | None) -> bool:
        """A slot under this instance's cap (counted here) and the fleet's (in Redis)."""
        if call_id not in self.held and self.instance_max is not None:
            # Slots being acquired count too: two concurrent acquires must not both fit.
            if len(self.held) + len(self._acquiring) >= self.instance_max:
                return False
        keys = [self._key("slots"), self._key("slot_graph"), self._key("gslots:", graph)]
        args = [
            call_id,
            graph,
            -1 if self.fleet_max is None else self.fleet_max,
            -1 if graph_limit is None else graph_limit,
            self._lease_ms,
            self._prefix,
        ]
        self._acquiring.add(call_id)
        try:
            ok = bool(await self._op("acquire slot", lambda: self._acquire(keys=keys, args=args)))
        except RegistryUnavailable:
            if self._fallback is None:
                raise
            ok = await self._fallback.acquire_slot(call_id, graph, graph_limit)
        finally:
            self._acquiring.discard(call_id)
        if ok:
            self.held[call_id] = graph
        return ok

    async def release(self, call_id: str) -> None:
        """Release a slot this instance holds; another instance's slot is never touched."""
        if self.held.pop(call_id, None) is None:
            return
        if self._fallback is not None:
            await self._fallback.release_slot(call_id)
        try:
            await self.release_remote(call_id)
        except RegistryUnavailable as exc:
            log.warning("slot release deferred: %s", exc, extra={"call_id": call_id})
            self._pending_release.add(call_id)

    async def release_remote(self, call_id: str) -> None:
        """Free a call's slot in Redis, whoever held it (also a swept orphan's)."""
        keys = [self._key("slots"), self._key("slot_graph")]
        await self._op(
            "release slot", lambda: self._release(keys=keys, args=[call_id, self._prefix])
        )

    async def flush_pending(self) -> None:
        for call_id in list(self._pending_release):
            await self.release_remote(call_id)
            self._pending_release.discard(call_id)
