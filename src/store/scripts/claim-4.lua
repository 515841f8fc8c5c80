-- claim: begin an attempt of a task whose message a worker just received (fresh, or
-- reclaimed from a worker that stopped renewing its lease). Decides whether it runs.
--
-- KEYS[1] record      taskwire:{q}:t:<id>
-- KEYS[2] events      taskwire:{q}:t:<id>:events
-- KEYS[3] stream      taskwire:{q}:stream
-- KEYS[4] exclusive   taskwire:{q}:excl:<key>   (the key the message names, or a dummy)
-- ARGV[1] id   ARGV[2] message id   ARGV[3] consumer group   ARGV[4] worker name
-- ARGV[5] attempt token   ARGV[6] now (ms)   ARGV[7] events channel   ARGV[8] log cap
-- ARGV[9] result TTL (ms)
--
-- Returns {'run', <record fields as a flat list>} when the worker must run it now;
-- otherwise the message is acknowledged and the reply says why it does not run:
-- {'gone'} (record expired or never written), {'finished', state} (already terminal),
-- {'expired'}, {'revoked'} (cancelled while its worker was lost), {'lost'} (its worker
-- died and no attempts are left: FAILURE WorkerLostError).
local id, msg, group, now = ARGV[1], ARGV[2], ARGV[3], ARGV[6]
local record, events = KEYS[1], KEYS[2]

local function ack()
  redis.call('XACK', KEYS[3], group, msg)
  redis.call('XDEL', KEYS[3], msg)
end

local function terminal(state, etype, emsg)
  redis.call('HSET', record, 'state', state, 'err_type', etype, 'err_msg', emsg,
    'finished', now, 'updated', now)
  redis.call('HDEL', record, 'token', 'next_at')
  finalize(record, events, KEYS[4], id, ARGV[9])
  emit(record, events, ARGV[7], ARGV[8])
  ack()
end

local f = redis.call('HMGET', record, 'state', 'attempt', 'max_attempts', 'expires', 'cancel', 'cancel_reason', 'version', 'progress')
local state = f[1]
if not state then ack() return {'gone'} end
if TERMINAL[state] then ack() return {'finished', state} end

local attempt, max = tonumber(f[2] or '0'), tonumber(f[3] or '1')
if state == 'STARTED' then
  -- The attempt in the record belonged to a worker that is gone.
  if f[5] then
    terminal('REVOKED', 'TaskRevokedError', f[6] or 'cancelled')
    return {'revoked'}
  end
  if attempt >= max then
    terminal('FAILURE', 'WorkerLostError',
      'the worker running attempt ' .. attempt .. ' of ' .. max .. ' was lost')
    return {'lost'}
  end
elseif f[4] and tonumber(f[4]) < tonumber(now) then
  terminal('REVOKED', 'Expired', 'the task expired before a worker could start it')
  return {'expired'}
end

local version = tonumber(f[7] or '0') + 1
redis.call('HSET', record, 'version', version, 'state', 'STARTED', 'attempt', attempt + 1,
  'worker', ARGV[4], 'token', ARGV[5], 'msg', msg, 'started', now, 'updated', now)
-- What an earlier attempt may have left: a RETRY its due time and error, any its progress.
if state == 'RETRY' or f[8] then
  redis.call('HDEL', record, 'next_at', 'err_type', 'err_msg', 'err_tb', 'progress')
end
return {'run', log_change(record, events, ARGV[7], ARGV[8], version)}
