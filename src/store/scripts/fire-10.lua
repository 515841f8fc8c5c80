-- fire: start the run of one schedule's tick, atomically, or do nothing.
--
-- KEYS[1]  schedule            taskwire:{q}:schedule:<id>
-- KEYS[2]  due set             taskwire:{q}:schedules
-- KEYS[3]  record              taskwire:{q}:t:<new task id>
-- KEYS[4]  events              taskwire:{q}:t:<new task id>:events
-- KEYS[5]  stream              taskwire:{q}:stream
-- KEYS[6]  scheduled           taskwire:{q}:scheduled
-- KEYS[7]  index               taskwire:{q}:index
-- KEYS[8]  latest              taskwire:{q}:latest
-- KEYS[9]  idempotency         taskwire:{q}:idem:schedule:<id>:<tick>
-- KEYS[10] last run's record   taskwire:{q}:t:<ARGV[4]>   (unused when ARGV[4] is '')
-- ARGV[1] schedule id   ARGV[2] tick T (ms): the next_run_at the caller read
-- ARGV[3] the next run (ms) after this tick, as the caller computed it
-- ARGV[4] the last run's task id the caller read, or ''   ARGV[5] now (ms)
-- ARGV[6] new task id   ARGV[7] due (ms; 0 = run now)   ARGV[8] events channel
-- ARGV[9] event log cap   ARGV[10] result TTL (ms)   ARGV[11] control channel
-- ARGV[12] idempotency key   ARGV[13..] the new record's fields, as name, value pairs
--
-- Returns {'early'} when T is still ahead by Redis's clock (the caller's clock runs fast):
-- nothing is written, a process whose clock is right fires it. {'stale'} when the schedule is gone, paused, or no longer at tick T (another
-- process fired it, or it was changed): nothing is written. {'skipped', last id} when
-- overlap is skip and the last run is not terminal: the tick is counted as skipped and the
-- schedule moves on. {'created', id} when the run was started.
local sid, tick, nxt, last = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now, id, due, ttl = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[10])

local s = redis.call('HMGET', KEYS[1], 'next_run_at', 'paused', 'last_task_id', 'overlap')
if not s[1] then
  redis.call('ZREM', KEYS[2], sid)
  return {'stale'}
end
if s[1] ~= tick or s[2] == '1' or (s[3] or '') ~= last then return {'stale'} end
local t = redis.call('TIME')
if tonumber(tick) > tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) then return {'early'} end

local function advance()
  redis.call('HSET', KEYS[1], 'next_run_at', nxt)
  redis.call('ZADD', KEYS[2], nxt, sid)
end

if s[4] == 'skip' and last ~= '' then
  local state = redis.call('HGET', KEYS[10], 'state')
  if state and not is_terminal(state) then
    redis.call('HINCRBY', KEYS[1], 'skipped', 1)
    advance()
    return {'skipped', last}
  end
end

-- A second run of one tick cannot happen while next_run_at guards it; the key is the proof
-- that outlives a replaced definition.
local existing = redis.call('GET', KEYS[9])
if existing then
  advance()
  return {'stale'}
end

create_record(KEYS[3], KEYS[4], ARGV[8], ARGV[9], slice(ARGV, 13))
redis.call('ZADD', KEYS[7], now, id)
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now - ttl)
redis.call('SET', KEYS[8], id)
redis.call('SET', KEYS[9], id, 'PX', ttl)
if queue_task(KEYS[5], KEYS[6], id, '', due, now) then
  publish(ARGV[11], 'due\n' .. due)
end

redis.call('HSET', KEYS[1], 'last_run_at', tick, 'last_task_id', id)
redis.call('HINCRBY', KEYS[1], 'runs', 1)
advance()
return {'created', id}
