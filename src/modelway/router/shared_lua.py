"""The Lua scripts of :mod:`modelway.router.shared_redis`: one per operation, each atomic, all keys of one
deployment in one hash slot (``{deployment}``). Time comes from the caller (wall-clock seconds, ``now``).

Keys of one deployment (``{prefix}{{deployment}}:...``)::

    c   hash: the circuit (s 0 closed | 1 open | 2 half-open, ou open until, cd cooldown, c consecutive failures,
        a account failure, n times opened, e last error, p the probe's lease, pu when the probe's pass expires)
    o   sorted set: outcomes in the circuit's error-rate window (member: lease, score: when)   \\ at most 10,000,
    f   sorted set: the failures among them                                                    / window + 60 s
    i   sorted set: requests in flight (member: lease, score: when the lease expires; refreshed while it runs)
    w   sorted set: requests admitted in the last 60 s (rpm, tpm)                  \\ expire 120 s after the last
    t   hash: their tokens (lease → tokens) and their sum (field ``#``)             / admission
    l   hash: each process's latency averages (process id → "ttft|total|when"), entries older than 60 s dropped

Every key has a time to live, refreshed when written: what a process that died held goes away on its own.
"""

from __future__ import annotations

from ..limits.resp import Script

__all__ = ["ABANDON", "ADMIT", "OUTCOME", "RELEASE", "SYNC", "TRACK"]

_COMMON = """
local function view(c, now)
  local v = redis.call('HMGET', c, 's', 'ou', 'cd', 'c', 'a', 'n', 'e')
  local ou = tonumber(v[2]) or now
  return {tonumber(v[1]) or 0, tostring(math.max(0, ou - now)), tostring(tonumber(v[3]) or 0),
          tonumber(v[4]) or 0, tonumber(v[5]) or 0, tonumber(v[6]) or 0, v[7] or ''}
end
local function trim(w, t, now)
  while true do
    local old = redis.call('ZRANGEBYSCORE', w, '-inf', now - 60, 'LIMIT', 0, 500)
    if #old == 0 then return end
    local vals = redis.call('HMGET', t, unpack(old))
    local sub = 0
    for _, v in ipairs(vals) do sub = sub + (tonumber(v) or 0) end
    redis.call('HDEL', t, unpack(old))
    redis.call('ZREM', w, unpack(old))
    if sub ~= 0 then redis.call('HINCRBY', t, '#', -sub) end
  end
end
"""

# KEYS: c, i, w, t
# ARGV: now, circuit (1|0), lease, lease until, probe pass until, max_concurrent, rpm, tpm ('' each: none),
#       tokens, in-flight set ttl
# returns {0 admitted, probe (1|0), in flight, view...} | {1 circuit refused, 0, in flight, view...}
#       | {2 quota refused, wait (-1: until a request ends), in flight, view...}
ADMIT = Script(
    _COMMON
    + """
local c, i, w, t = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', i, '-inf', now)
local probe = 0
if ARGV[2] == '1' then
  local st = redis.call('HMGET', c, 's', 'ou', 'pu')
  local s = tonumber(st[1]) or 0
  if s ~= 0 then
    if (s == 1 and now >= (tonumber(st[2]) or 0)) or (s == 2 and now >= (tonumber(st[3]) or 0)) then
      probe = 1
    else
      return {1, '0', redis.call('ZCARD', i), unpack(view(c, now))}
    end
  end
end
local maxc, rpm, tpm = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local tokens = tonumber(ARGV[9]) or 0
local wait = 0
local inflight = redis.call('ZCARD', i)
if maxc and inflight >= maxc then wait = -1 end
if rpm or tpm then trim(w, t, now) end
local n = redis.call('ZCARD', w)
if rpm and n >= rpm and wait >= 0 then
  local e = redis.call('ZRANGE', w, n - rpm, n - rpm, 'WITHSCORES')
  wait = math.max(wait, tonumber(e[2]) + 60 - now)
end
if tpm and n > 0 and wait >= 0 then
  local excess = (tonumber(redis.call('HGET', t, '#')) or 0) + tokens - tpm
  if excess > 0 then
    local freed, at, k = 0, now, 0
    while k < n and freed < excess do
      local batch = redis.call('ZRANGE', w, k, k + 199, 'WITHSCORES')
      local ids = {}
      for j = 1, #batch, 2 do ids[#ids + 1] = batch[j] end
      local vals = redis.call('HMGET', t, unpack(ids))
      for j = 1, #ids do
        freed = freed + (tonumber(vals[j]) or 0)
        at = tonumber(batch[2 * j]) + 60
        if freed >= excess then break end
      end
      k = k + 200
    end
    wait = math.max(wait, at - now)
  end
end
if wait ~= 0 then return {2, tostring(wait), inflight, unpack(view(c, now))} end
redis.call('ZADD', i, ARGV[4], ARGV[3])
redis.call('EXPIRE', i, ARGV[10])
if rpm or tpm then
  redis.call('ZADD', w, ARGV[1], ARGV[3])
  redis.call('HSET', t, ARGV[3], tokens)
  redis.call('HINCRBY', t, '#', tokens)
  redis.call('EXPIRE', w, 120)
  redis.call('EXPIRE', t, 120)
end
if probe == 1 then
  redis.call('HSET', c, 's', 2, 'p', ARGV[3], 'pu', ARGV[5])
  redis.call('EXPIRE', c, math.ceil(tonumber(ARGV[5]) - now) + 3600)
end
return {0, tostring(probe), inflight + 1, unpack(view(c, now))}
"""
)

# KEYS: i; ARGV: now, lease, lease until, ttl — a request in flight with nothing to check (returns: in flight)
TRACK = Script(
    """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return redis.call('ZCARD', KEYS[1])
"""
)

# KEYS: i, w, t; ARGV: lease, tokens ('': keep the estimate)
RELEASE = Script(
    """
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then
  local old = redis.call('HGET', KEYS[3], ARGV[1])
  if old then
    local new = tonumber(ARGV[2])
    redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
    redis.call('HINCRBY', KEYS[3], '#', new - tonumber(old))
  end
end
return 0
"""
)

# KEYS: c, o, f
# ARGV: now, ok (1|0), probe (1|0), member, account failure (1|0), error name, failures, error_rate, min_requests,
#       window, cooldown, max_cooldown, account_cooldown
# (circuit.py's CircuitBreaker.success / failure, step for step; returns the view)
OUTCOME = Script(
    _COMMON
    + """
local c = KEYS[1]
local now = tonumber(ARGV[1])
local ok, probe, account = ARGV[2] == '1', ARGV[3] == '1', ARGV[5] == '1'
local window = tonumber(ARGV[10])
local st = redis.call('HMGET', c, 's', 'cd', 'c', 'a')
local s, cd, consecutive, acc = tonumber(st[1]) or 0, tonumber(st[2]) or 0, tonumber(st[3]) or 0, tonumber(st[4]) or 0
local function open(cooldown)
  local cap = tonumber(ARGV[12])
  if acc == 1 then cap = math.max(cap, tonumber(ARGV[13])) end
  cd = math.min(cooldown, cap)
  redis.call('HSET', c, 's', 1, 'ou', now + cd, 'cd', cd, 'a', acc)
  redis.call('HINCRBY', c, 'n', 1)
  redis.call('HDEL', c, 'p', 'pu')
  redis.call('DEL', KEYS[2], KEYS[3])
end
local function remember(failed)
  redis.call('ZADD', KEYS[2], now, ARGV[4])
  if failed then redis.call('ZADD', KEYS[3], now, ARGV[4]) end
  for _, k in ipairs({KEYS[2], KEYS[3]}) do
    redis.call('ZREMRANGEBYSCORE', k, '-inf', '(' .. tostring(now - window))
    redis.call('ZREMRANGEBYRANK', k, 0, -10001)
    redis.call('EXPIRE', k, math.ceil(window) + 60)
  end
end
if ok then
  if probe then
    redis.call('HSET', c, 's', 0, 'cd', 0, 'c', 0, 'a', 0)
    redis.call('HDEL', c, 'p', 'pu', 'ou')
    redis.call('DEL', KEYS[2], KEYS[3])
  else
    redis.call('HSET', c, 'c', 0)
    if s == 0 then remember(false) end
  end
else
  consecutive = consecutive + 1
  redis.call('HSET', c, 'c', consecutive, 'e', ARGV[6])
  if account then
    if s ~= 1 or probe then
      acc = 1
      open(math.max(tonumber(ARGV[13]), probe and cd * 2 or 0))
    end
  elseif probe then
    if cd > 0 then open(cd * 2) else open(tonumber(ARGV[11])) end
  elseif s == 0 then
    remember(true)
    local total, failed = redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[3])
    if consecutive >= tonumber(ARGV[7]) or (total >= tonumber(ARGV[9]) and failed >= tonumber(ARGV[8]) * total) then
      open(tonumber(ARGV[11]))
    end
  end
end
local ou = tonumber(redis.call('HGET', c, 'ou')) or now
redis.call('EXPIRE', c, math.ceil(math.max(ou - now, 0) + window) + 3600)
return view(c, now)
"""
)

# KEYS: c; ARGV: now, lease — the probe holding ``lease`` ended without a verdict: the next request probes
ABANDON = Script(
    _COMMON
    + """
local st = redis.call('HMGET', KEYS[1], 's', 'p')
if tonumber(st[1]) == 2 and st[2] == ARGV[2] then
  redis.call('HSET', KEYS[1], 's', 1, 'ou', ARGV[1])
  redis.call('HDEL', KEYS[1], 'p', 'pu')
end
return view(KEYS[1], tonumber(ARGV[1]))
"""
)

# KEYS: c, i, w, t, l
# ARGV: now, process id, lease until, latency ('' or "ttft|total", '' for one not measured), in-flight set ttl,
#       leases of this process to extend...
# returns {in flight, mean ttft | '', mean total | '', requests in the last minute, their tokens, view...}
SYNC = Script(
    _COMMON
    + """
local c, i, w, t, l = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', i, '-inf', now)
if #ARGV > 5 then
  for k = 6, #ARGV do redis.call('ZADD', i, 'XX', ARGV[3], ARGV[k]) end
  redis.call('EXPIRE', i, ARGV[5])
end
if ARGV[4] ~= '' then
  redis.call('HSET', l, ARGV[2], ARGV[4] .. '|' .. ARGV[1])
  redis.call('EXPIRE', l, 120)
end
local ttft, total, nt, nn = 0, 0, 0, 0
local all = redis.call('HGETALL', l)
for j = 1, #all, 2 do
  local a, b, ts = string.match(all[j + 1], '^([^|]*)|([^|]*)|(.*)$')
  if tonumber(ts) == nil or tonumber(ts) < now - 60 then
    redis.call('HDEL', l, all[j])
  else
    if tonumber(a) then ttft, nt = ttft + tonumber(a), nt + 1 end
    if tonumber(b) then total, nn = total + tonumber(b), nn + 1 end
  end
end
local requests, tokens = 0, 0
if redis.call('EXISTS', w) == 1 then
  trim(w, t, now)
  requests = redis.call('ZCARD', w)
  tokens = tonumber(redis.call('HGET', t, '#')) or 0
end
return {redis.call('ZCARD', i), nt > 0 and tostring(ttft / nt) or '', nn > 0 and tostring(total / nn) or '',
        requests, tokens, unpack(view(c, now))}
"""
)
