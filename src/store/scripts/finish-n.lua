-- finish: end the current attempt of running tasks of one queue, each SUCCESS, FAILURE,
-- REVOKED, RETRY (wait in the scheduled set, then run again) or PENDING (handed back at
-- worker shutdown), in order. Only the attempt named by the token may finish a task; a
-- cancel request turns any outcome (hand-back included) into REVOKED, so a late result never
-- overwrites a revocation. The finishes a worker has in one turn of its event loop share a
-- call, so Redis pays the per-call cost of a script once for them; each is still its own
-- checked change.
--
-- KEYS[1] stream      taskwire:{q}:stream
-- KEYS[2] scheduled   taskwire:{q}:scheduled
-- then three per task: record taskwire:{q}:t:<id>, events taskwire:{q}:t:<id>:events,
--   exclusive taskwire:{q}:excl:<key> (or a dummy when the task has none)
-- ARGV[1] consumer group   ARGV[2] now (ms)   ARGV[3] events channel   ARGV[4] log cap
-- ARGV[5] result TTL (ms)
-- then per task: id, message id, attempt token, target state, with RETRY when the next
--   attempt is due (ms, else 0), n, and n values: fields to write as name, value pairs
--   ('' deletes)
--
-- Returns one reply per task, in order: {'ok', state written, version}; {'stale', current
-- state} when the token is not the current attempt's (nothing written, the message is left
-- to its owner); {'gone'} (the record expired: the message is acknowledged).
local stream, scheduled = KEYS[1], KEYS[2]
local group, now, channel, maxlen, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

local function finish(id, msg, token, target, next_at, fields, record, events, exclusive)
  local f = redis.call('HMGET', record, 'state', 'token', 'cancel', 'cancel_reason', 'ekey', 'version', 'attempt')
  if not f[1] then
    redis.call('XACK', stream, group, msg)
    return {'gone'}
  end
  if f[1] ~= 'STARTED' or f[2] ~= token then return {'stale', f[1]} end

  if f[3] then
    -- A cancel was asked for: whatever the handler did, the task ends REVOKED.
    target = 'REVOKED'
    local why = f[4] or 'cancelled'
    if f[3] == 'terminate' then why = why .. ' (terminated by force)' end
    fields = {'result', '', 'err_type', 'TaskRevokedError', 'err_msg', why, 'err_tb', ''}
  end
  if not allowed(f[1], target) then return {'stale', f[1]} end

  -- One HSET and one HDEL: the fields given ('' deletes), the state, and what the target adds.
  local version = tonumber(f[6] or '0') + 1
  local set, del = {'version', version, 'state', target, 'updated', now}, {'token', 'msg'}
  split_fields(fields, set, del)
  local ends = false
  if target == 'RETRY' then
    set[#set + 1] = 'next_at'
    set[#set + 1] = next_at
    redis.call('ZADD', scheduled, next_at, id .. '\n' .. (f[5] or ''))
  elseif target == 'PENDING' then
    -- Handed back unfinished, not failed: it does not use up an attempt; the next claim runs
    -- it under the same attempt number.
    set[#set + 1] = 'attempt'
    set[#set + 1] = tonumber(f[7]) - 1
    del[#del + 1] = 'worker'
    del[#del + 1] = 'started'
    redis.call('XADD', stream, '*', 'id', id, 'k', f[5] or '')
  else
    ends = true
    set[#set + 1] = 'finished'
    set[#set + 1] = now
  end
  redis.call('HSET', record, unpack(set))
  redis.call('HDEL', record, unpack(del))
  -- The entry stays in the stream until a worker trims the stream (trim-1.lua).
  redis.call('XACK', stream, group, msg)
  if ends then finalize(record, events, exclusive, id, ttl, f[5] or false) end
  log_change(record, events, channel, maxlen, version)
  return {'ok', target, version}
end

local out = {}
local a, k = 6, 3
while a <= #ARGV do
  local n = tonumber(ARGV[a + 5])
  local fields = {}
  for i = a + 6, a + 5 + n do fields[#fields + 1] = ARGV[i] end
  out[#out + 1] = finish(ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], fields, KEYS[k], KEYS[k + 1], KEYS[k + 2])
  a, k = a + 6 + n, k + 3
end
return out
