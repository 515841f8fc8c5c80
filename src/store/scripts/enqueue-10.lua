-- enqueue: create a task record and queue it, atomically, or refuse.
--
-- KEYS[1]  record              taskwire:{q}:t:<id>
-- KEYS[2]  events              taskwire:{q}:t:<id>:events
-- KEYS[3]  stream              taskwire:{q}:stream
-- KEYS[4]  scheduled           taskwire:{q}:scheduled
-- KEYS[5]  index               taskwire:{q}:index
-- KEYS[6]  latest              taskwire:{q}:latest
-- KEYS[7]  exclusive           taskwire:{q}:excl:<key>     (unused when ARGV[7] is '')
-- KEYS[8]  latest for key      taskwire:{q}:latest:<key>   (unused when ARGV[7] is '')
-- KEYS[9]  idempotency         taskwire:{q}:idem:<key>     (unused when ARGV[8] is '')
-- KEYS[10] holder record       the record of ARGV[9]       (unused when ARGV[9] is '')
-- ARGV[1] id   ARGV[2] now (ms)   ARGV[3] due (ms; 0 = run now)   ARGV[4] events channel
-- ARGV[5] event log cap   ARGV[6] result TTL (ms)   ARGV[7] exclusive key or ''
-- ARGV[8] idempotency key or ''   ARGV[9] id the caller saw holding the exclusive key, or ''
-- ARGV[10] control channel (told `due\n<ms>` of a countdown, so workers wake for it)
-- ARGV[11..] the record's fields, as name, value pairs
--
-- Returns {'created', version}; {'duplicate', id} when the idempotency key already names a
-- task; {'exists', id} when a non-terminal task holds the exclusive key; {'moved'} when the
-- holder changed since the caller looked (the caller looks again and retries).
local id, now, due = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local ekey, ikey, expected = ARGV[7], ARGV[8], ARGV[9]

if ikey ~= '' then
  local existing = redis.call('GET', KEYS[9])
  if existing then return {'duplicate', existing} end
end

if ekey ~= '' then
  local holder = redis.call('GET', KEYS[7]) or ''
  if holder ~= expected then return {'moved'} end
  if holder ~= '' then
    local state = redis.call('HGET', KEYS[10], 'state')
    if state and not is_terminal(state) then return {'exists', holder} end
  end
end

if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('ERR task id ' .. id .. ' already exists')
end

create_record(KEYS[1], KEYS[2], ARGV[4], ARGV[5], slice(ARGV, 11))

local ttl = tonumber(ARGV[6])
redis.call('ZADD', KEYS[5], now, id)
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - ttl)
redis.call('SET', KEYS[6], id)
if ekey ~= '' then
  redis.call('SET', KEYS[7], id)
  redis.call('SET', KEYS[8], id)
end
if ikey ~= '' then
  redis.call('SET', KEYS[9], id, 'PX', ttl)
end

if queue_task(KEYS[3], KEYS[4], id, ekey, due, now) then
  redis.call('PUBLISH', ARGV[10], 'due\n' .. due)
end
return {'created', 1}
