-- finish: end the current attempt of a running task: SUCCESS, FAILURE, REVOKED, RETRY
-- (wait in the scheduled set, then run again) or PENDING (handed back at worker shutdown).
-- Only the attempt named by the token may finish it; a cancel request turns any outcome
-- (hand-back included) into REVOKED, so a late result never overwrites a revocation.
--
-- KEYS[1] record      taskwire:{q}:t:<id>
-- KEYS[2] events      taskwire:{q}:t:<id>:events
-- KEYS[3] stream      taskwire:{q}:stream
-- KEYS[4] exclusive   taskwire:{q}:excl:<key>   (or a dummy when the task has none)
-- KEYS[5] scheduled   taskwire:{q}:scheduled
-- ARGV[1] id   ARGV[2] message id   ARGV[3] consumer group   ARGV[4] attempt token
-- ARGV[5] target state   ARGV[6] now (ms)   ARGV[7] events channel   ARGV[8] log cap
-- ARGV[9] result TTL (ms)   ARGV[10] with RETRY: when the next attempt is due (ms)
-- ARGV[11..] fields to write, as name, value pairs ('' deletes)
--
-- Returns {'ok', state written, version}; {'stale', current state} when the token is not
-- the current attempt's (nothing written, the message is left to its owner); {'gone'}.
local id, msg, group, token, target, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local record, events = KEYS[1], KEYS[2]

local f = redis.call('HMGET', record, 'state', 'token', 'cancel', 'cancel_reason', 'ekey', 'version', 'attempt')
if not f[1] then
  redis.call('XACK', KEYS[3], group, msg)
  return {'gone'}
end
if f[1] ~= 'STARTED' or f[2] ~= token then return {'stale', f[1]} end

local fields = slice(ARGV, 11)
if f[3] then
  -- A cancel was asked for: whatever the handler did, the task ends REVOKED.
  target = 'REVOKED'
  local why = f[4] or 'cancelled'
  if f[3] == 'terminate' then why = why .. ' (terminated by force)' end
  fields = {'result', '', 'err_type', 'TaskRevokedError', 'err_msg', why, 'err_tb', ''}
end
if not ALLOWED[f[1]][target] then return {'stale', f[1]} end

-- One HSET and one HDEL: the fields given ('' deletes), the state, and what the target adds.
local version = tonumber(f[6] or '0') + 1
local set, del = {'version', version, 'state', target, 'updated', now}, {'token', 'msg'}
split_fields(fields, set, del)
local ends = false
if target == 'RETRY' then
  set[#set + 1] = 'next_at'
  set[#set + 1] = ARGV[10]
  redis.call('ZADD', KEYS[5], ARGV[10], id .. '\n' .. (f[5] or ''))
elseif target == 'PENDING' then
  -- Handed back unfinished, not failed: it does not use up an attempt; the next claim runs
  -- it under the same attempt number.
  set[#set + 1] = 'attempt'
  set[#set + 1] = tonumber(f[7]) - 1
  del[#del + 1] = 'worker'
  del[#del + 1] = 'started'
  redis.call('XADD', KEYS[3], '*', 'id', id, 'k', f[5] or '')
else
  ends = true
  set[#set + 1] = 'finished'
  set[#set + 1] = now
end
redis.call('HSET', record, unpack(set))
redis.call('HDEL', record, unpack(del))
-- The entry stays in the stream until a worker trims the stream (trim-1.lua).
redis.call('XACK', KEYS[3], group, msg)
if ends then finalize(record, events, KEYS[4], id, ARGV[9], f[5] or false) end
log_change(record, events, ARGV[7], ARGV[8], version)
return {'ok', target, version}
