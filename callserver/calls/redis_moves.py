"""What moving live calls between instances needs from Redis: who is alive and taking calls
(heartbeats), and atomic changes of a call's owner. Part of
:class:`~callserver.calls.redis_registry.RedisRegistry`.

A call changes hands in one script, so it has exactly one owner at any time: a leaving
instance gives it to a named peer (``transfer``), and the survivor that claimed a dead
instance's call takes it on instead of hanging it up (``take_orphan``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from callserver.calls import redis_scripts
from callserver.calls.redis_sids import Op


class RedisMoves:
    """Heartbeats and ownership changes, under one key prefix."""

    def __init__(
        self, client: Any, key: Callable[..., str], op: Op, *, instance_id: str, lease_ms: int
    ) -> None:
        self._key = key
        self._op = op
        self._instance_id = instance_id
        self._lease_ms = lease_ms
        self._transfer = client.register_script(redis_scripts.TRANSFER_OWNER)
        self._take_orphan = client.register_script(redis_scripts.TAKE_ORPHAN)
        self._heartbeat = client.register_script(redis_scripts.HEARTBEAT)
        self._peers = client.register_script(redis_scripts.PEERS)
        self.draining = False

    async def heartbeat(self, calls: int) -> None:
        """This instance is alive, has ``calls`` calls, and takes more unless draining."""
        args = [self._instance_id, self._lease_ms, calls, 1 if self.draining else 0]
        keys = [self._key("instances")]
        await self._op("heartbeat", lambda: self._heartbeat(keys=keys, args=args))

    async def peers(self) -> list[tuple[str, int]]:
        """Other live instances that take calls, with their call counts, least busy first."""
        keys = [self._key("instances")]
        flat: list[str] = await self._op(
            "list peers", lambda: self._peers(keys=keys, args=[self._instance_id])
        )
        pairs = [(flat[i], int(flat[i + 1] or 0)) for i in range(0, len(flat) - 1, 2)]
        return sorted(pairs, key=lambda pair: pair[1])

    async def transfer(self, call_id: str, to_owner: str) -> bool:
        """Give a call this instance owns to ``to_owner``; False if it is not ours to give."""
        keys = [self._key("call:", call_id), self._key("live")]
        args = [call_id, self._instance_id, to_owner, self._lease_ms]
        return bool(await self._op("transfer call", lambda: self._transfer(keys=keys, args=args)))

    async def take_orphan(self, call_id: str) -> bool:
        """Carry on a dead instance's call this instance claimed (not end it)."""
        keys = [self._key("call:", call_id), self._key("live")]
        args = [call_id, self._instance_id, self._lease_ms]
        return bool(await self._op("take orphan", lambda: self._take_orphan(keys=keys, args=args)))
