-- schedule_edit: create, replace, pause, resume or delete one schedule, atomically.
--
-- KEYS[1]  schedule    taskwire:{q}:schedule:<id>
-- KEYS[2]  due set     taskwire:{q}:schedules
-- ARGV[1] operation: put | pause | resume | delete   ARGV[2] schedule id
-- put:    ARGV[3] '1' to replace an existing one   ARGV[4] next run (ms) for a new or
--         changed definition   ARGV[5] paused: '1', '0', or '' to keep (new: '0')
--         ARGV[6..] the definition's fields, as name, value pairs (including 'def', the
--         definition as one text: equal texts keep the next run, unless the put ends a pause)
-- resume: ARGV[3] next run (ms)
--
-- put returns {'exists'} (replace not asked), else {'created' | 'replaced' | 'unchanged',
-- the hash}; pause and resume return {'missing'} or {'ok', the hash}; delete returns
-- {'deleted'} or {'missing'}. A paused schedule has no entry in the due set, so no process
-- fires it; deleting removes both keys at once, so nothing fires after the call.
local op, sid = ARGV[1], ARGV[2]
local h, due = KEYS[1], KEYS[2]
local exists = redis.call('EXISTS', h) == 1

if op == 'delete' then
  redis.call('ZREM', due, sid)
  if not exists then return {'missing'} end
  redis.call('DEL', h)
  return {'deleted'}
end

if op == 'put' then
  if exists and ARGV[3] ~= '1' then return {'exists'} end
  local fields = slice(ARGV, 6)
  local def
  for i = 1, #fields, 2 do
    if fields[i] == 'def' then def = fields[i + 1] end
  end
  local outcome, nxt = 'created', ARGV[4]
  local paused = ARGV[5]
  if exists then
    local old = redis.call('HMGET', h, 'def', 'next_run_at', 'paused')
    if paused == '' then paused = old[3] or '0' end
    -- A schedule coming out of a pause starts at the next tick, as resume does.
    if old[1] == def and old[2] and not (old[3] == '1' and paused == '0') then
      outcome, nxt = 'unchanged', old[2]
    else
      outcome = 'replaced'
    end
    -- What the old definition had and the new one does not set goes; the run history stays.
    local keep = redis.call('HMGET', h, 'last_run_at', 'last_task_id', 'runs', 'skipped')
    redis.call('DEL', h)
    local names = {'last_run_at', 'last_task_id', 'runs', 'skipped'}
    for i = 1, 4 do
      if keep[i] then redis.call('HSET', h, names[i], keep[i]) end
    end
  elseif paused == '' then
    paused = '0'
  end
  redis.call('HSET', h, 'next_run_at', nxt, 'paused', paused, unpack(fields))
  if paused == '1' then
    redis.call('ZREM', due, sid)
  else
    redis.call('ZADD', due, nxt, sid)
  end
  return {outcome, redis.call('HGETALL', h)}
end

if not exists then return {'missing'} end
if op == 'pause' then
  redis.call('HSET', h, 'paused', '1')
  redis.call('ZREM', due, sid)
elseif op == 'resume' then
  if redis.call('HGET', h, 'paused') == '1' then
    redis.call('HSET', h, 'paused', '0', 'next_run_at', ARGV[3])
    redis.call('ZADD', due, ARGV[3], sid)
  end
else
  return redis.error_reply('ERR unknown schedule operation ' .. op)
end
return {'ok', redis.call('HGETALL', h)}
