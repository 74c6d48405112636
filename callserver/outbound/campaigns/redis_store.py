"""Campaign state in Redis (with ``REDIS_URL``): several instances share every campaign.

Each decision instances race on is one Lua script (atomic in Redis): a claim checks the
campaign's state, its in-flight count against ``max_concurrent`` and the pace's next slot
(on Redis's own clock, so the pace holds for the fleet, whatever the hosts' clocks say),
then moves the row to ``dialing`` under the claiming runner's name. A runner refreshes
``<prefix>campowner:<owner>`` while it lives; a ``dialing`` row whose owner key expired
(``kill -9``, a lost host) is marked ``unknown`` by whichever runner sweeps next, never
dialed again. Layout under the key prefix ``P``:

- ``P camps``: ZSET campaign id -> created_at
- ``P camp:<id>``: HASH spec, state, reason, created_at, updated_at, total, in_flight,
  next_slot (ms, Redis time), dials, max_concurrent, interval_ms
- ``P camp:<id>:rows``: HASH row number -> row JSON
- ``P camp:<id>:pending``: ZSET row number -> next_at (ms)
- ``P camp:<id>:dialing``: HASH row number -> owner
- ``P camp:<id>:counts``: HASH rows by status, and ``o:<outcome>`` by final outcome
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio import Redis

from callserver.calls.redis_client import run_op
from callserver.outbound.campaigns.attempt import INTERRUPTED, AttemptResult
from callserver.outbound.campaigns.spec import CampaignSpec, RowSpec
from callserver.outbound.campaigns.store import (
    TRANSITIONS,
    CampaignInfo,
    Claim,
    RowState,
    TransitionError,
)

T = TypeVar("T")
OP_TIMEOUT_S = 2.0
CREATE_CHUNK = 1000

_CLAIM = """
local t = redis.call('TIME')
local clock = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local c = redis.call('HMGET', KEYS[1], 'state', 'in_flight', 'next_slot', 'max_concurrent',
                     'interval_ms', 'last_dial')
if c[1] ~= 'running' then return {'stopped', 0} end
if tonumber(c[2]) >= tonumber(c[4]) then
  -- held back by max_concurrent, not late: the pace earns no catching up
  redis.call('HSET', KEYS[1], 'next_slot', math.max(tonumber(c[3]), clock))
  return {'busy', 0}
end
local score = redis.call('ZSCORE', KEYS[3], ARGV[1])
if not score then return {'taken', 0} end
local now = tonumber(ARGV[3])
if tonumber(score) > now then return {'not_due', tonumber(score) - now} end
-- the pace, on Redis's clock (store.pace_wait / store.next_pace_slot)
local slot = tonumber(c[3])
local interval = tonumber(c[5])
local wait = math.max(slot - clock, tonumber(c[6] or '0') + interval / 2 - clock)
if wait > 0 then return {'pace', wait} end
local nxt = clock + interval
if clock - slot < math.max(2 * interval, 2000) then nxt = slot + interval end
local row = cjson.decode(redis.call('HGET', KEYS[2], ARGV[1]))
row['status'] = 'dialing'
row['attempts'] = row['attempts'] + 1
row['owner'] = ARGV[2]
row['call_id'] = cjson.null
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(row))
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[1], 'next_slot', nxt, 'last_dial', clock, 'updated_at', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'in_flight', 1)
redis.call('HINCRBY', KEYS[1], 'dials', 1)
redis.call('HINCRBY', KEYS[5], 'pending', -1)
redis.call('HINCRBY', KEYS[5], 'dialing', 1)
return {'ok', row['attempts']}
"""

_UNCLAIM = """
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return 0 end
local row = cjson.decode(raw)
if row['status'] ~= 'dialing' or row['owner'] ~= ARGV[2] then return 0 end
row['status'] = 'pending'
row['attempts'] = row['attempts'] - 1
row['owner'] = cjson.null
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(row))
local next_at = row['next_at']
if type(next_at) ~= 'number' then next_at = 0 end
redis.call('ZADD', KEYS[3], next_at * 1000, ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'in_flight', -1)
redis.call('HINCRBY', KEYS[1], 'dials', -1)
redis.call('HINCRBY', KEYS[5], 'dialing', -1)
redis.call('HINCRBY', KEYS[5], 'pending', 1)
return 1
"""

_FINISH = """
-- ARGV: row, owner, attempt, outcome, call_id, detail, retry_at_ms (-1 = none), now_s, recovered
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return 0 end
local row = cjson.decode(raw)
if row['status'] ~= 'dialing' or row['owner'] ~= ARGV[2] then return 0 end
if ARGV[9] ~= '1' and row['attempts'] ~= tonumber(ARGV[3]) then return 0 end
local calls = row['calls']
if type(calls) ~= 'table' then calls = {} end
local call_id = ARGV[5]
if call_id == '' then call_id = row['call_id'] end
if call_id == nil or call_id == '' then call_id = cjson.null end
local detail = cjson.null
if ARGV[6] ~= '' then detail = ARGV[6] end
table.insert(calls, {attempt = row['attempts'], call_id = call_id, outcome = ARGV[4],
                     at = tonumber(ARGV[8]), error = detail})
row['calls'] = calls
row['outcome'] = ARGV[4]
row['detail'] = detail
row['owner'] = cjson.null
row['call_id'] = cjson.null
local state = redis.call('HGET', KEYS[1], 'state')
local retry = tonumber(ARGV[7])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'in_flight', -1)
redis.call('HINCRBY', KEYS[5], 'dialing', -1)
if retry >= 0 and (state == 'running' or state == 'paused') then
  row['status'] = 'pending'
  row['next_at'] = retry / 1000
  redis.call('ZADD', KEYS[3], retry, ARGV[1])
  redis.call('HINCRBY', KEYS[5], 'pending', 1)
else
  row['status'] = 'done'
  row['next_at'] = cjson.null
  redis.call('HINCRBY', KEYS[5], 'done', 1)
  redis.call('HINCRBY', KEYS[5], 'o:' .. ARGV[4], 1)
end
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(row))
redis.call('HSET', KEYS[1], 'updated_at', ARGV[8])
return 1
"""

_ROW_UPDATE = """
-- ARGV: row, kind (skip|defer|attach), value, owner
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return 0 end
local row = cjson.decode(raw)
if ARGV[2] == 'attach' then
  if row['status'] ~= 'dialing' or row['owner'] ~= ARGV[4] then return 0 end
  row['call_id'] = ARGV[3]
elseif row['status'] ~= 'pending' then
  return 0
elseif ARGV[2] == 'skip' then
  row['status'] = 'skipped'
  row['outcome'] = ARGV[3]
  row['next_at'] = cjson.null
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('HINCRBY', KEYS[5], 'pending', -1)
  redis.call('HINCRBY', KEYS[5], 'skipped', 1)
  redis.call('HINCRBY', KEYS[5], 'o:' .. ARGV[3], 1)
else
  row['next_at'] = tonumber(ARGV[3])
  redis.call('ZADD', KEYS[3], tonumber(ARGV[3]) * 1000, ARGV[1])
end
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(row))
return 1
"""

_SET_STATE = """
-- ARGV: state, reason, now_s, allowed-from states (space separated)
local current = redis.call('HGET', KEYS[1], 'state')
if not current then return {'missing'} end
local allowed = ' ' .. ARGV[4] .. ' '
if current ~= ARGV[1] and not string.find(allowed, ' ' .. current .. ' ', 1, true) then
  return {'refused', current}
end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'reason', ARGV[2], 'updated_at', ARGV[3])
if ARGV[1] == 'cancelled' then
  local ids = redis.call('ZRANGE', KEYS[3], 0, -1)
  for _, id in ipairs(ids) do
    local row = cjson.decode(redis.call('HGET', KEYS[2], id))
    row['status'] = 'cancelled'
    row['next_at'] = cjson.null
    redis.call('HSET', KEYS[2], id, cjson.encode(row))
  end
  redis.call('DEL', KEYS[3])
  redis.call('HINCRBY', KEYS[5], 'pending', -#ids)
  redis.call('HINCRBY', KEYS[5], 'cancelled', #ids)
end
return {'ok', current}
"""

_COMPLETE = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
if redis.call('ZCARD', KEYS[3]) > 0 or redis.call('HLEN', KEYS[4]) > 0 then return 0 end
redis.call('HSET', KEYS[1], 'state', 'completed', 'updated_at', ARGV[1])
return 1
"""


def _decode_row(raw: str) -> RowState:
    data = json.loads(raw)
    calls = data.get("calls")
    variables = data.get("variables")
    return RowState(
        row=int(data["row"]),
        to=data["to"],
        variables=variables if isinstance(variables, dict) else {},
        timezone=data.get("timezone"),
        status=data["status"],
        attempts=int(data.get("attempts") or 0),
        next_at=data.get("next_at"),
        outcome=data.get("outcome"),
        detail=data.get("detail"),
        calls=calls if isinstance(calls, list) else [],
        owner=data.get("owner"),
        call_id=data.get("call_id"),
    )


class RedisCampaignStore:
    """Implements :class:`~callserver.outbound.campaigns.store.CampaignStore` on Redis."""

    def __init__(self, client: Redis, prefix: str = "callserver:") -> None:
        self._redis = client
        self._prefix = prefix
        self._claim = client.register_script(_CLAIM)
        self._unclaim = client.register_script(_UNCLAIM)
        self._finish = client.register_script(_FINISH)
        self._update = client.register_script(_ROW_UPDATE)
        self._set_state = client.register_script(_SET_STATE)
        self._complete = client.register_script(_COMPLETE)

    def _k(self, campaign_id: str, part: str = "") -> str:
        return f"{self._prefix}camp:{campaign_id}{part}"

    def _keys(self, campaign_id: str) -> list[str]:
        """camp, rows, pending, dialing, counts: the keys every row script takes."""
        return [
            self._k(campaign_id),
            self._k(campaign_id, ":rows"),
            self._k(campaign_id, ":pending"),
            self._k(campaign_id, ":dialing"),
            self._k(campaign_id, ":counts"),
        ]

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
        keys = self._keys(campaign_id)
        pending = [r for r in rows if not r.skip]
        skipped = [r for r in rows if r.skip]

        async def write() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(
                    keys[0],
                    mapping={
                        "spec": json.dumps(spec.as_json()),
                        "state": "running",
                        "reason": "",
                        "created_at": now,
                        "updated_at": now,
                        "total": len(rows),
                        "in_flight": 0,
                        "next_slot": 0,
                        "last_dial": 0,
                        "dials": 0,
                        "max_concurrent": spec.max_concurrent,
                        "interval_ms": max(int(spec.interval_s * 1000), 1),
                    },
                )
                for start in range(0, len(rows), CREATE_CHUNK):
                    chunk = rows[start : start + CREATE_CHUNK]
                    pipe.hset(
                        keys[1],
                        mapping={
                            str(r.row): json.dumps(
                                {
                                    "row": r.row,
                                    "to": r.to,
                                    "variables": dict(r.variables),
                                    "timezone": r.timezone,
                                    "status": "skipped" if r.skip else "pending",
                                    "attempts": 0,
                                    "next_at": None if r.skip else now,
                                    "outcome": r.skip,
                                    "calls": [],
                                }
                            )
                            for r in chunk
                        },
                    )
                for start in range(0, len(pending), CREATE_CHUNK):
                    chunk = pending[start : start + CREATE_CHUNK]
                    pipe.zadd(keys[2], {str(r.row): now * 1000 for r in chunk})
                counts: dict[str, int] = {"pending": len(pending), "skipped": len(skipped)}
                for r in skipped:
                    counts[f"o:{r.skip}"] = counts.get(f"o:{r.skip}", 0) + 1
                pipe.hset(keys[4], mapping=counts)  # type: ignore[arg-type]
                pipe.zadd(f"{self._prefix}camps", {campaign_id: now})
                await pipe.execute()

        await self._op("create", write)
        info = await self.get(campaign_id)
        assert info is not None
        return info

    async def get(self, campaign_id: str) -> CampaignInfo | None:
        keys = self._keys(campaign_id)

        async def read() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(keys[0])
                pipe.hgetall(keys[4])
                return await pipe.execute()

        fields, counts = await self._op("get", read)
        if not fields:
            return None
        statuses = {k: int(v) for k, v in counts.items() if not k.startswith("o:") and int(v)}
        outcomes = {k[2:]: int(v) for k, v in counts.items() if k.startswith("o:") and int(v)}
        return CampaignInfo(
            id=campaign_id,
            spec=CampaignSpec.from_json(json.loads(fields["spec"])),
            state=fields["state"],
            reason=fields.get("reason") or None,
            created_at=float(fields["created_at"]),
            updated_at=float(fields["updated_at"]),
            total=int(fields["total"]),
            counts=statuses,
            outcomes=outcomes,
            dials=int(fields.get("dials") or 0),
            in_flight=int(fields.get("in_flight") or 0),
        )

    async def _ids(self) -> list[str]:
        return await self._op("list", lambda: self._redis.zrange(f"{self._prefix}camps", 0, -1))

    async def list(self) -> list[CampaignInfo]:
        return [info for i in await self._ids() if (info := await self.get(i)) is not None]

    async def running(self) -> list[str]:
        ids = await self._ids()

        async def states() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for campaign_id in ids:
                    pipe.hget(self._k(campaign_id), "state")
                return await pipe.execute()

        found = await self._op("states", states) if ids else []
        return [i for i, state in zip(ids, found, strict=True) if state == "running"]

    async def set_state(
        self, campaign_id: str, state: str, reason: str | None = None
    ) -> CampaignInfo | None:
        allowed = " ".join(s for s, targets in TRANSITIONS.items() if state in targets)
        result = await self._op(
            "set state",
            lambda: self._set_state(
                keys=self._keys(campaign_id), args=[state, reason or "", time.time(), allowed]
            ),
        )
        if result[0] == "missing":
            return None
        if result[0] == "refused":
            raise TransitionError(f"campaign is {result[1]}: it cannot become {state}")
        return await self.get(campaign_id)

    async def complete_if_done(self, campaign_id: str) -> bool:
        done = await self._op(
            "complete", lambda: self._complete(keys=self._keys(campaign_id), args=[time.time()])
        )
        return bool(done)

    # ---- rows --------------------------------------------------------------------------------

    async def due(self, campaign_id: str, now: float) -> tuple[RowState | None, float | None]:
        keys = self._keys(campaign_id)
        first = await self._op("due", lambda: self._redis.zrange(keys[2], 0, 0, withscores=True))
        if not first:
            return None, None
        row_id, score = first[0]
        next_at = float(score) / 1000
        if next_at > now:
            return None, next_at
        raw = await self._op("row", lambda: self._redis.hget(keys[1], row_id))
        return (_decode_row(raw) if raw else None), next_at

    async def claim(self, campaign_id: str, row: int, now: float, owner: str) -> Claim:
        result, value = await self._op(
            "claim",
            lambda: self._claim(
                keys=self._keys(campaign_id), args=[row, owner, int(now * 1000), now]
            ),
        )
        if result == "ok":
            return Claim("ok", attempt=int(value))
        return Claim(result, wait_s=max(float(value), 0.0) / 1000)

    async def unclaim(self, campaign_id: str, row: int, owner: str) -> None:
        await self._op(
            "unclaim", lambda: self._unclaim(keys=self._keys(campaign_id), args=[row, owner])
        )

    async def _row_update(
        self, campaign_id: str, row: int, kind: str, value: Any, owner: str = ""
    ) -> None:
        await self._op(
            kind,
            lambda: self._update(keys=self._keys(campaign_id), args=[row, kind, value, owner]),
        )

    async def defer(self, campaign_id: str, row: int, next_at: float) -> None:
        await self._row_update(campaign_id, row, "defer", next_at)

    async def skip(self, campaign_id: str, row: int, why: str) -> None:
        await self._row_update(campaign_id, row, "skip", why)

    async def attach_call(self, campaign_id: str, row: int, owner: str, call_id: str) -> None:
        await self._row_update(campaign_id, row, "attach", call_id, owner)

    async def finish(self, result: AttemptResult) -> None:
        retry = -1 if result.retry_at is None else int(result.retry_at * 1000)
        args = [
            result.row,
            result.owner,
            result.attempt,
            result.outcome,
            result.call_id or "",
            result.detail or "",
            retry,
            result.now,
            "0",
        ]
        keys = self._keys(result.campaign_id)
        await self._op("finish", lambda: self._finish(keys=keys, args=args))

    async def rows(self, campaign_id: str) -> list[RowState]:
        raw = await self._op("rows", lambda: self._redis.hgetall(self._k(campaign_id, ":rows")))
        return sorted((_decode_row(v) for v in raw.values()), key=lambda r: r.row)

    async def heartbeat(self, owner: str, ttl_s: float) -> None:
        key = f"{self._prefix}campowner:{owner}"
        await self._op("heartbeat", lambda: self._redis.set(key, "1", px=max(int(ttl_s * 1000), 1)))

    async def recover(self, owner: str, now: float) -> int:
        """Rows ``dialing`` under a runner whose heartbeat expired -> ``unknown``."""
        recovered = 0
        for campaign_id in await self._ids():
            keys = self._keys(campaign_id)
            dialing: dict[str, str] = await self._op(
                "dialing", lambda keys=keys: self._redis.hgetall(keys[3])
            )
            owners = {o for o in dialing.values() if o != owner}
            alive: dict[str, bool] = {}
            for other in owners:
                key = f"{self._prefix}campowner:{other}"
                alive[other] = bool(
                    await self._op("alive", lambda key=key: self._redis.exists(key))
                )
            for row, other in dialing.items():
                if other == owner or alive.get(other, True):
                    continue
                args = [row, other, 0, "unknown", "", INTERRUPTED, -1, now, "1"]
                done = await self._op(
                    "recover", lambda keys=keys, args=args: self._finish(keys=keys, args=args)
                )
                recovered += int(done)
        return recovered
