-- claim: begin an attempt of each task whose message a worker just received (fresh, or
-- reclaimed from a worker that stopped renewing its lease), in order. Decides whether each
-- runs. The claims of one queue made within one tick share a call, so Redis pays the
-- per-call cost of a script once for them; each claim is still its own checked change.
--
-- Or, in read mode, first read up to N new messages of the queue for this worker (as a
-- non-blocking XREADGROUP would) and claim those: a worker whose slot just freed gets its
-- next task, begun, in the round trip of the finish that freed the slot.
--
-- KEYS[1] stream      taskwire:{q}:stream
-- then three per task: record taskwire:{q}:t:<id>, events taskwire:{q}:t:<id>:events,
--   exclusive taskwire:{q}:excl:<key> (the key the message names, or a dummy)
--   (read mode: none; the keys are the two prefixes below plus the message's id and key,
--   as store/keys.ts names them)
-- ARGV[1] consumer group   ARGV[2] worker name (the consumer)   ARGV[3] now (ms)
-- ARGV[4] events channel   ARGV[5] log cap   ARGV[6] result TTL (ms)
-- ARGV[7] mode: 'given' or 'read'
-- given: then three per task: id, message id, attempt token
-- read:  ARGV[8] record key prefix (taskwire:{q}:t:)   ARGV[9] event log suffix (:events)
--        ARGV[10] exclusive key prefix (taskwire:{q}:excl:), then one attempt token per
--        message to read at most
--
-- Returns one reply per task, in order (read mode: per message read, each preceded by its
-- message id, task id and exclusive key, as {msg, id, key, reply}): {'run', <fields as a flat list of name, value>}
-- when the worker must run it now (only the fields a worker uses: RUN_FIELDS); otherwise the message is acknowledged and the reply says why it
-- does not run: {'gone'} (record expired or never written), {'finished', state} (already
-- terminal), {'expired'}, {'revoked'} (cancelled while its worker was lost), {'lost'} (its
-- worker died and no attempts are left: FAILURE WorkerLostError).
local stream, group, worker, now = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local channel, maxlen, ttl = ARGV[4], ARGV[5], ARGV[6]

-- What a worker needs of a task it runs (each string of a reply costs Redis and the worker).
local RUN_FIELDS = {name = true, args = true, kwargs = true, attempt = true, max_attempts = true,
  time_limit = true, backoff_initial = true, backoff_max = true, retry_on = true, traceparent = true}

-- The entry stays in the stream until a worker trims the stream (trim-1.lua).
local function ack(msg)
  redis.call('XACK', stream, group, msg)
end

-- End a task that will not run, with its message.
local function terminal(id, msg, record, events, exclusive, state, etype, emsg)
  redis.call('HSET', record, 'state', state, 'err_type', etype, 'err_msg', emsg,
    'finished', now, 'updated', now)
  redis.call('HDEL', record, 'token', 'next_at')
  finalize(record, events, exclusive, id, ttl)
  emit(record, events, channel, maxlen)
  ack(msg)
end

local function claim(id, msg, token, record, events, exclusive)
  local f = redis.call('HMGET', record, 'state', 'attempt', 'max_attempts', 'expires', 'cancel', 'cancel_reason', 'version', 'progress')
  local state = f[1]
  if not state then ack(msg) return {'gone'} end
  if is_terminal(state) then ack(msg) return {'finished', state} end

  local attempt, max = tonumber(f[2] or '0'), tonumber(f[3] or '1')
  if state == 'STARTED' then
    -- The attempt in the record belonged to a worker that is gone.
    if f[5] then
      terminal(id, msg, record, events, exclusive, 'REVOKED', 'TaskRevokedError', f[6] or 'cancelled')
      return {'revoked'}
    end
    if attempt >= max then
      terminal(id, msg, record, events, exclusive, 'FAILURE', 'WorkerLostError',
        'the worker running attempt ' .. attempt .. ' of ' .. max .. ' was lost')
      return {'lost'}
    end
  elseif f[4] and tonumber(f[4]) < tonumber(now) then
    terminal(id, msg, record, events, exclusive, 'REVOKED', 'Expired', 'the task expired before a worker could start it')
    return {'expired'}
  end

  local version = tonumber(f[7] or '0') + 1
  redis.call('HSET', record, 'version', version, 'state', 'STARTED', 'attempt', attempt + 1,
    'worker', worker, 'token', token, 'msg', msg, 'started', now, 'updated', now)
  -- What an earlier attempt may have left: a RETRY its due time and error, any its progress.
  if state == 'RETRY' or f[8] then
    redis.call('HDEL', record, 'next_at', 'err_type', 'err_msg', 'err_tb', 'progress')
  end
  return {'run', log_change(record, events, channel, maxlen, version, RUN_FIELDS)}
end

local out = {}
if ARGV[7] == 'read' then
  local taskPrefix, eventsSuffix, exclPrefix = ARGV[8], ARGV[9], ARGV[10]
  local read = redis.call('XREADGROUP', 'GROUP', group, worker, 'COUNT', #ARGV - 10, 'STREAMS', stream, '>')
  local entries = read and read[1] and read[1][2] or {}
  for _, entry in ipairs(entries) do
    local msg, fields, id, key = entry[1], entry[2] or {}, nil, ''
    for f = 1, #fields - 1, 2 do
      if fields[f] == 'id' then id = fields[f + 1] elseif fields[f] == 'k' then key = fields[f + 1] end
    end
    -- A message without a task id is not a task (left as an XREADGROUP reader leaves it).
    if id then
      local n, record = #out + 1, taskPrefix .. id
      out[n] = {msg, id, key, claim(id, msg, ARGV[10 + n], record, record .. eventsSuffix, exclPrefix .. key)}
    end
  end
  return out
end
for t = 0, (#ARGV - 7) / 3 - 1 do
  local a, k = 8 + t * 3, 2 + t * 3
  out[t + 1] = claim(ARGV[a], ARGV[a + 1], ARGV[a + 2], KEYS[k], KEYS[k + 1], KEYS[k + 2])
end
return out
