"""Lua scripts for the Redis registry: each decision several instances race on is one script.

Redis runs a script atomically, so "check, then write" cannot interleave with another
instance's. Every lease uses the server's clock (``TIME``), never an instance's, so clock
skew between hosts cannot make a live lease look expired. Some scripts build key names from
a prefix (per-graph slot sets, call hashes): fine on one Redis server, not Redis Cluster.

Layout under the key prefix ``P``:

- ``P d:<webhook-id>``, ``P c:<call-id>``: dedupe claims (SET NX EX).
- ``P call:<call-id>``: hash of ``owner``, ``state``, ``end_reason``, ``data`` (JSON),
  and after a sweep ``swept`` / ``sweep_attempts``; expires some time after the call ends.
- ``P live``: ZSET call-id -> lease expiry (ms, server time) of every call not yet ended.
- ``P slots``: ZSET call-id -> lease expiry of every held concurrency slot;
  ``P slot_graph``: hash call-id -> graph; ``P gslots:<graph>``: ZSET per graph.
- ``P sid:<CallSid>``: the call-id a Twilio CallSid maps to; ``P tstatus:<CallSid>``: a
  terminal Twilio status remembered before the call existed (``calls/redis_sids.py``).
"""

from __future__ import annotations

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

ACQUIRE_SLOT = (
    _NOW
    + """
-- KEYS: slots, slot_graph, gslots:<graph>
-- ARGV: call_id, graph, max_calls (fleet-wide, -1 = none), graph_limit (-1 = none),
--       lease_ms, prefix
local id = ARGV[1]
local exp = now + tonumber(ARGV[5])
if redis.call('ZSCORE', KEYS[1], id) then
  redis.call('ZADD', KEYS[1], exp, id)
  return 1
end
-- reclaim the slots of calls whose owner stopped renewing (dead instance)
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, e in ipairs(expired) do
  local g = redis.call('HGET', KEYS[2], e)
  if g then redis.call('ZREM', ARGV[6] .. 'gslots:' .. g, e) end
  redis.call('HDEL', KEYS[2], e)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local cap = tonumber(ARGV[3])
if cap >= 0 and redis.call('ZCARD', KEYS[1]) >= cap then return 0 end
local limit = tonumber(ARGV[4])
if limit >= 0 and redis.call('ZCARD', KEYS[3]) >= limit then return 0 end
redis.call('ZADD', KEYS[1], exp, id)
redis.call('ZADD', KEYS[3], exp, id)
redis.call('HSET', KEYS[2], id, ARGV[2])
return 1
"""
)

RELEASE_SLOT = """
-- KEYS: slots, slot_graph ; ARGV: call_id, prefix
local g = redis.call('HGET', KEYS[2], ARGV[1])
if g then redis.call('ZREM', ARGV[2] .. 'gslots:' .. g, ARGV[1]) end
redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('ZREM', KEYS[1], ARGV[1])
"""

PUT_RECORD = (
    _NOW
    + """
-- KEYS: call hash, live ; ARGV: call_id, owner, state, end_reason, data, lease_ms
-- A record already ended (or taken over by a sweep) is never resurrected by a late write.
if redis.call('HGET', KEYS[1], 'state') == 'ended' or
   redis.call('HEXISTS', KEYS[1], 'swept') == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'state', ARGV[3], 'end_reason', ARGV[4],
           'data', ARGV[5])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[6]), ARGV[1])
return 1
"""
)

RENEW = (
    _NOW
    + """
-- KEYS: live, slots, slot_graph
-- ARGV: owner, lease_ms, prefix, then per call: id, state, end_reason, data, slot graph or ''
-- Rewrites each record (so state/agents stay fresh for other instances, and a Redis that
-- lost its data gets it back), extends record and slot leases; returns the ids this owner
-- has lost (swept as orphans, or owned by someone else).
local owner, prefix = ARGV[1], ARGV[3]
local exp = now + tonumber(ARGV[2])
local lost = {}
local i = 4
while i + 4 <= #ARGV do
  local id, state, reason, data, graph = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  i = i + 5
  local key = prefix .. 'call:' .. id
  local cur = redis.call('HGET', key, 'owner')
  if (cur and cur ~= owner) or redis.call('HEXISTS', key, 'swept') == 1 then
    table.insert(lost, id)
  elseif redis.call('HGET', key, 'state') ~= 'ended' then
    redis.call('HSET', key, 'owner', owner, 'state', state, 'end_reason', reason, 'data', data)
    redis.call('ZADD', KEYS[1], exp, id)
    if graph ~= '' then
      redis.call('ZADD', KEYS[2], exp, id)
      redis.call('HSET', KEYS[3], id, graph)
      redis.call('ZADD', prefix .. 'gslots:' .. graph, exp, id)
    end
  end
end
return lost
"""
)

CLAIM_ORPHAN = (
    _NOW
    + """
-- KEYS: live, call hash ; ARGV: call_id, ttl_s
-- Only one instance gets a positive answer per expired lease: the ZREM is the claim. The
-- TTL bounds what is left behind if the claimant dies before finishing the job.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > now then return -1 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'swept', '1', 'state', 'ending', 'end_reason', 'owner_lost')
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
return redis.call('HINCRBY', KEYS[2], 'sweep_attempts', 1)
"""
)

EXPIRED = (
    _NOW
    + """
-- KEYS: live ; ARGV: limit
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
"""
)

LOCATE = (
    _NOW
    + """
-- KEYS: call hash, live ; ARGV: call_id -> {owner or '', state or '', lease alive 1/0}
local owner = redis.call('HGET', KEYS[1], 'owner') or ''
local state = redis.call('HGET', KEYS[1], 'state') or ''
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
local alive = 0
if score and tonumber(score) > now then alive = 1 end
return {owner, state, alive}
"""
)

TRANSFER_OWNER = (
    _NOW
    + """
-- KEYS: call hash, live ; ARGV: call_id, from_owner, to_owner, lease_ms
-- A live call changes hands only from the owner it still has (never a swept or ended one).
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2] or
   redis.call('HEXISTS', KEYS[1], 'swept') == 1 or
   redis.call('HGET', KEYS[1], 'state') == 'ended' then
  return 0
end
redis.call('HSET', KEYS[1], 'owner', ARGV[3])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[1])
return 1
"""
)

TAKE_ORPHAN = (
    _NOW
    + """
-- KEYS: call hash, live ; ARGV: call_id, new_owner, lease_ms
-- The survivor that claimed an orphan (CLAIM_ORPHAN) carries the call on instead of ending
-- it: the sweep marks come off, the call is live and leased again, under its new owner.
if redis.call('HEXISTS', KEYS[1], 'swept') == 0 or
   redis.call('HGET', KEYS[1], 'state') == 'ended' then
  return 0
end
redis.call('HDEL', KEYS[1], 'swept', 'sweep_attempts')
redis.call('PERSIST', KEYS[1])
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'state', 'active', 'end_reason', '')
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
return 1
"""
)

HEARTBEAT = (
    _NOW
    + """
-- KEYS: instances ; ARGV: instance_id, lease_ms, calls, draining (0/1)
-- Every instance says it is alive (and how busy, and whether it is leaving) each renewal.
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60000)
redis.call('HSET', KEYS[1] .. ':' .. ARGV[1], 'calls', ARGV[3], 'draining', ARGV[4])
redis.call('PEXPIRE', KEYS[1] .. ':' .. ARGV[1], tonumber(ARGV[2]) * 2)
return 1
"""
)

PEERS = (
    _NOW
    + """
-- KEYS: instances ; ARGV: instance_id -> {id, calls, ...} of live instances that take calls
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  if id ~= ARGV[1] then
    local info = redis.call('HMGET', KEYS[1] .. ':' .. id, 'calls', 'draining')
    if info[2] ~= '1' then
      table.insert(out, id)
      table.insert(out, info[1] or '0')
    end
  end
end
return out
"""
)
