"""Campaign state in Redis (with ``REDIS_URL``): several instances share every campaign.

Each decision instances race on is one Lua script (atomic in Redis): a claim checks the
campaign's state, its in-flight count against ``max_concurrent`` and the pace's next slot
(on Redis's own clock, so the pace holds for the fleet, whatever the hosts' clocks say),
then moves the row to ``dialing`` under the claiming runner's name. A runner refreshes
``<prefix>campowner:<owner>`` while it lives; a ``dialing`` row whose owner key expired
(``kill -9``, a lost host) is marked ``unknown`` by whichever runner sweeps next, never
dialed again.

This module runs the operations; the scripts are in ``redis_scripts``, the key layout in
``redis_keys``, creating and reading campaigns in ``redis_campaigns``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio import Redis

from callserver.calls.redis_client import run_op
from callserver.outbound.campaigns import redis_scripts
from callserver.outbound.campaigns.attempt import AttemptResult, interrupted
from callserver.outbound.campaigns.redis_campaigns import decode_info, decode_row, write_campaign
from callserver.outbound.campaigns.redis_keys import CampaignKeys
from callserver.outbound.campaigns.spec import CampaignSpec, RowSpec
from callserver.outbound.campaigns.store import CampaignInfo, Claim, RowState
from callserver.outbound.campaigns.transitions import allowed_from, refused

__all__ = ["OP_TIMEOUT_S", "RedisCampaignStore"]

T = TypeVar("T")
OP_TIMEOUT_S = 2.0


def _finish_args(result: AttemptResult, recovered: bool) -> list[Any]:
    """``FINISH``'s ARGV for ``result``: "" and -1 stand for None (Lua has no None in
    ARGV); ``recovered`` skips the attempt check (the sweep does not know the attempt)."""
    return [
        result.row,
        result.owner,
        result.attempt,
        result.outcome,
        result.call_id or "",
        result.detail or "",
        -1 if result.retry_at is None else int(result.retry_at * 1000),
        result.now,
        "1" if recovered else "0",
    ]


class RedisCampaignStore:
    """Implements :class:`~callserver.outbound.campaigns.store.CampaignStore` on Redis."""

    def __init__(self, client: Redis, prefix: str = "callserver:") -> None:
        self._redis = client
        self._keys = CampaignKeys(prefix)
        self._claim = client.register_script(redis_scripts.CLAIM)
        self._unclaim = client.register_script(redis_scripts.UNCLAIM)
        self._finish = client.register_script(redis_scripts.FINISH)
        self._update = client.register_script(redis_scripts.ROW_UPDATE)
        self._set_state = client.register_script(redis_scripts.SET_STATE)
        self._complete = client.register_script(redis_scripts.COMPLETE)

    async def _op(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        return await run_op(f"campaign {what}", fn, OP_TIMEOUT_S)

    async def open(self) -> None:
        await self._op("ping", self._redis.ping)

    async def close(self) -> None:
        return None  # the client belongs to the registry

    # ---- campaigns ---------------------------------------------------------------------------

    async def create(
        self, campaign_id: str, spec: CampaignSpec, rows: list[RowSpec], now: float
    ) -> CampaignInfo:
        await self._op(
            "create", lambda: write_campaign(self._redis, self._keys, campaign_id, spec, rows, now)
        )
        info = await self.get(campaign_id)
        assert info is not None
        return info

    async def get(self, campaign_id: str) -> CampaignInfo | None:
        keys = self._keys.rows(campaign_id)

        async def read() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(keys[0])
                pipe.hgetall(keys[4])
                return await pipe.execute()

        fields, counts = await self._op("get", read)
        return decode_info(campaign_id, fields, counts) if fields else None

    async def _ids(self) -> list[str]:
        return await self._op("list", lambda: self._redis.zrange(self._keys.campaigns, 0, -1))

    async def list(self) -> list[CampaignInfo]:
        return [info for i in await self._ids() if (info := await self.get(i)) is not None]

    async def running(self) -> list[str]:
        ids = await self._ids()

        async def states() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for campaign_id in ids:
                    pipe.hget(self._keys.campaign(campaign_id), "state")
                return await pipe.execute()

        found = await self._op("states", states) if ids else []
        return [i for i, state in zip(ids, found, strict=True) if state == "running"]

    async def set_state(
        self, campaign_id: str, state: str, reason: str | None = None
    ) -> CampaignInfo | None:
        args = [state, reason or "", time.time(), allowed_from(state)]
        result = await self._op(
            "set state", lambda: self._set_state(keys=self._keys.rows(campaign_id), args=args)
        )
        if result[0] == "missing":
            return None
        if result[0] == "refused":
            raise refused(result[1], state)
        return await self.get(campaign_id)

    async def complete_if_done(self, campaign_id: str) -> bool:
        done = await self._op(
            "complete",
            lambda: self._complete(keys=self._keys.rows(campaign_id), args=[time.time()]),
        )
        return bool(done)

    # ---- rows --------------------------------------------------------------------------------

    async def due(self, campaign_id: str, now: float) -> tuple[RowState | None, float | None]:
        keys = self._keys.rows(campaign_id)
        first = await self._op("due", lambda: self._redis.zrange(keys[2], 0, 0, withscores=True))
        if not first:
            return None, None
        row_id, score = first[0]
        next_at = float(score) / 1000
        if next_at > now:
            return None, next_at
        raw = await self._op("row", lambda: self._redis.hget(keys[1], row_id))
        return (decode_row(raw) if raw else None), next_at

    async def claim(self, campaign_id: str, row: int, now: float, owner: str) -> Claim:
        result, value = await self._op(
            "claim",
            lambda: self._claim(
                keys=self._keys.rows(campaign_id), args=[row, owner, int(now * 1000), now]
            ),
        )
        if result == "ok":
            return Claim("ok", attempt=int(value))
        return Claim(result, wait_s=max(float(value), 0.0) / 1000)

    async def unclaim(self, campaign_id: str, row: int, owner: str) -> None:
        await self._op(
            "unclaim", lambda: self._unclaim(keys=self._keys.rows(campaign_id), args=[row, owner])
        )

    async def _row_update(
        self, campaign_id: str, row: int, kind: str, value: Any, owner: str = ""
    ) -> None:
        await self._op(
            kind,
            lambda: self._update(keys=self._keys.rows(campaign_id), args=[row, kind, value, owner]),
        )

    async def defer(self, campaign_id: str, row: int, next_at: float) -> None:
        await self._row_update(campaign_id, row, "defer", next_at)

    async def skip(self, campaign_id: str, row: int, why: str) -> None:
        await self._row_update(campaign_id, row, "skip", why)

    async def attach_call(self, campaign_id: str, row: int, owner: str, call_id: str) -> None:
        await self._row_update(campaign_id, row, "attach", call_id, owner)

    async def finish(self, result: AttemptResult) -> None:
        keys = self._keys.rows(result.campaign_id)
        args = _finish_args(result, recovered=False)
        await self._op("finish", lambda: self._finish(keys=keys, args=args))

    async def rows(self, campaign_id: str) -> list[RowState]:
        key = self._keys.campaign(campaign_id, ":rows")
        raw = await self._op("rows", lambda: self._redis.hgetall(key))
        return sorted((decode_row(v) for v in raw.values()), key=lambda r: r.row)

    async def heartbeat(self, owner: str, ttl_s: float) -> None:
        key = self._keys.owner(owner)
        await self._op("heartbeat", lambda: self._redis.set(key, "1", px=max(int(ttl_s * 1000), 1)))

    async def recover(self, owner: str, now: float) -> int:
        """Rows ``dialing`` under a runner whose heartbeat expired -> ``unknown``."""
        recovered = 0
        for campaign_id in await self._ids():
            keys = self._keys.rows(campaign_id)
            dialing: dict[str, str] = await self._op(
                "dialing", lambda keys=keys: self._redis.hgetall(keys[3])
            )
            owners = {o for o in dialing.values() if o != owner}
            alive: dict[str, bool] = {}
            for other in owners:
                key = self._keys.owner(other)
                alive[other] = bool(
                    await self._op("alive", lambda key=key: self._redis.exists(key))
                )
            for row, other in dialing.items():
                if other == owner or alive.get(other, True):
                    continue
                # attempt 0 and no call id: the script takes the row's own (``recovered``).
                ended = interrupted(campaign_id, int(row), other, 0, None, now)
                args = _finish_args(ended, recovered=True)
                done = await self._op(
                    "recover", lambda keys=keys, args=args: self._finish(keys=keys, args=args)
                )
                recovered += int(done)
        return recovered
