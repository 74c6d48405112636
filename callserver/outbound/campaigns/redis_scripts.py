"""The Lua scripts behind :class:`~.redis_store.RedisCampaignStore`: every decision that
instances race on is one script, atomic in Redis.

The rules the scripts share with SQLite are not written twice by hand: the catch-up bound
of the pace (``store.CATCH_UP_S``) and the campaign states that keep a retry
(``attempt.RETRY_STATES``) are filled in from the Python constants when this module loads.
What stays Lua is the pace arithmetic itself (on Redis's clock: ``store.pace_wait`` and
``store.next_pace_slot`` are its Python twins; ``tests/test_campaign_store.py`` runs the
same suite on both stores).
"""

from __future__ import annotations

from callserver.outbound.campaigns.attempt import RETRY_STATES
from callserver.outbound.campaigns.store import CATCH_UP_S

CLAIM = """
-- KEYS (every script): camp, rows, pending, dialing, counts (``CampaignKeys.rows``)
-- ARGV: row, owner, now_ms, now_s
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
if clock - slot < math.max(2 * interval, CATCH_UP_MS) then nxt = slot + interval end
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

UNCLAIM = """
-- ARGV: row, owner
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

FINISH = """
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
if retry >= 0 and (RETRY_STATES) then
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

ROW_UPDATE = """
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

SET_STATE = """
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

COMPLETE = """
-- ARGV: now_s
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
if redis.call('ZCARD', KEYS[3]) > 0 or redis.call('HLEN', KEYS[4]) > 0 then return 0 end
redis.call('HSET', KEYS[1], 'state', 'completed', 'updated_at', ARGV[1])
return 1
"""


def _fill(script: str) -> str:
    """The script with the shared constants in place of their names."""
    retry_states = " or ".join(f"state == '{state}'" for state in sorted(RETRY_STATES))
    return script.replace("CATCH_UP_MS", str(int(CATCH_UP_S * 1000))).replace(
        "RETRY_STATES", retry_states
    )


CLAIM = _fill(CLAIM)
FINISH = _fill(FINISH)
