-- attempt: a worker's writes to the tasks of one queue in one turn of its event loop, in
-- this order:
--   1. finish: end the current attempt of tasks it ran (SUCCESS, FAILURE, REVOKED, RETRY, or
--      PENDING when handed back at shutdown);
--   2. claim: begin an attempt of each task whose message it was handed (read from the queue
--      stream by the worker, src/broker/consumer.ts, or reclaimed from a worker that stopped
--      renewing its lease).
-- The worker sends this call and its next non-blocking read of the queue together, so a
-- slot freed by a finish is filled from the same round trip, and since the finishes come
-- first, a worker never has more tasks STARTED than slots. Redis pays the per-call cost of
-- a script once for the whole turn; each finish and claim is still its own checked change.
--
-- Only the attempt named by the token may finish a task; a cancel request turns any outcome
-- (hand-back included) into REVOKED, so a late result never overwrites a revocation. A claim
-- decides whether the task runs.
--
-- A call's reply can be lost (the connection dropped after Redis ran it), and ioredis then
-- sends the call again once it reconnects, as the worker does when a call fails for want
-- of a connection. Run twice, the call would begin its tasks a second time, and the first
-- attempts, begun but never run or renewed, would later be failed as a lost worker's. So
-- each call carries a nonce, and its reply is kept in the worker's reply hash (KEYS[3])
-- under that nonce: a call sent again gets the reply of its first run and changes nothing.
-- The worker names in each call the nonces whose replies it has received, which are then
-- dropped; the hash expires when the worker stops calling.
--
-- Every key it touches is in KEYS (all share the queue's hash tag: one Cluster slot), so a
-- cluster redirects the whole call while its slot migrates. The key count varies with the
-- call (attempt-n.lua: the caller gives it).
-- KEYS[1] stream      taskwire:{q}:stream
-- KEYS[2] scheduled   taskwire:{q}:scheduled
-- KEYS[3] replies     taskwire:{q}:replies:<worker>
-- KEYS[4] stats       taskwire:{q}:stats (outcome counters: count_end, flush_counts in lib.lua)
-- then per finish, then per claim, the task's keys: record taskwire:{q}:t:<id>, events
--   taskwire:{q}:t:<id>:events, exclusive taskwire:{q}:excl:<key> (taskwire:{q}:excl: when
--   it has none: never written)
-- ARGV: consumer group, worker name (the consumer), now (ms), events channel, log cap,
--   result TTL (ms), number of finishes, number of claims, this call's nonce, how long its
--   reply is kept (ms), n, then n nonces of calls whose replies the worker received;
-- then per finish: id, message id, attempt token, target state, when the next attempt is
--   due (ms, RETRY; else 0), n, then n values: fields to write as name, value pairs
--   ('' deletes);
-- then per claim: id, message id, attempt token.
--
-- Returns {finish replies, claim replies}, each in order:
-- finish: {'ok', state written, version}; {'stale', current state} when the token is not the
--   current attempt's (nothing written, the message is left to its owner); {'gone'} (the
--   record expired: the message is acknowledged).
-- claim: {'run', <fields as a flat list of name, value>} when the worker must run it now
--   (only the fields a worker uses: RUN_FIELDS); otherwise the message is acknowledged and
--   the reply says why it does not run: {'gone'} (record expired or never written),
--   {'finished', state} (already terminal), {'expired'}, {'revoked'} (cancelled while its
--   worker was lost), {'lost'} (its worker died and no attempts are left: FAILURE
--   WorkerLostError).
-- A call sent again returns instead the JSON text of its first reply.
local key, arg = reader(KEYS, 1), reader(ARGV, 1)
local stream, scheduled, replies, stats = key(4)
local group, worker, now, channel, maxlen, ttl = arg(6)
local finishes, claims = arg(2)
local nonce, keep = arg(2)
local answered = {arg(tonumber(arg(1)))}

-- Dropped only after the call's own writes: Redis at maxmemory refuses a script's first
-- write but lets through the ones after it, so the tasks' writes must come first.
local function drop_answered()
  if #answered > 0 then redis.call('HDEL', replies, unpack(answered)) end
end
local earlier = redis.call('HGET', replies, nonce)
if earlier then
  drop_answered()
  return earlier
end

-- What a worker needs of a task it runs (each string of a reply costs Redis and the worker).
local RUN_FIELDS = {'name', 'args', 'kwargs', 'max_attempts', 'time_limit', 'backoff_initial', 'backoff_max',
  'retry_on', 'traceparent'}
-- Read by a claim in one HMGET, before it writes: what decides whether and how it runs
-- (1..14), then the rest of RUN_FIELDS and the queue, for its reply and its log entry. None
-- of RUN_FIELDS is written by a claim, so the values read first are the values it leaves.
local CLAIM_FIELDS = {'state', 'attempt', 'max_attempts', 'expires', 'cancel', 'cancel_reason', 'version', 'progress',
  'wf_plan', 'name', 'started', 'updated', 'not_before', 'next_at', 'args', 'kwargs', 'time_limit', 'backoff_initial',
  'backoff_max', 'retry_on', 'traceparent', 'queue'}
local CLAIM_AT = {}
for i, name in ipairs(CLAIM_FIELDS) do CLAIM_AT[name] = i end

-- The entry stays in the stream until a worker trims the stream (trim-1.lua).
local function ack(msg)
  redis.call('XACK', stream, group, msg)
end

local function finish(id, msg, token, target, next_at, fields, record, events, exclusive)
  local f = redis.call('HMGET', record, 'state', 'token', 'cancel', 'cancel_reason', 'ekey', 'version', 'attempt', 'name', 'queue', 'started')
  if not f[1] then
    ack(msg)
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
  ack(msg)
  if ends then finalize(record, events, exclusive, id, ttl, f[5] or false) end
  log_written(events, channel, maxlen, version, {'id', id, 'name', f[8], 'queue', f[9]}, set, del)
  if target ~= 'PENDING' then count_end(f[8] or '', target, f[10] and tonumber(now) - tonumber(f[10])) end
  return {'ok', target, version}
end

-- End a task that will not run, with its message.
-- `task`, `ran`: its name and the run time of the attempt it ends (nil: none ran), counted.
local function terminal(id, msg, record, events, exclusive, state, etype, emsg, task, ran)
  redis.call('HSET', record, 'state', state, 'err_type', etype, 'err_msg', emsg,
    'finished', now, 'updated', now)
  redis.call('HDEL', record, 'token', 'next_at')
  finalize(record, events, exclusive, id, ttl)
  emit(record, events, channel, maxlen)
  count_end(task or '', state, ran)
  ack(msg)
end

local function claim(id, msg, token, record, events, exclusive)
  local f = redis.call('HMGET', record, unpack(CLAIM_FIELDS))
  local state = f[1]
  if not state then ack(msg) return {'gone'} end
  if is_terminal(state) then ack(msg) return {'finished', state} end

  local attempt, max = tonumber(f[2] or '0'), tonumber(f[3] or '1')
  local ran = state == 'STARTED' and f[11] and tonumber(now) - tonumber(f[11]) or nil
  if state == 'STARTED' then
    -- The attempt in the record belonged to a worker that is gone.
    if f[5] then
      terminal(id, msg, record, events, exclusive, 'REVOKED', 'TaskRevokedError', f[6] or 'cancelled', f[10], ran)
      return {'revoked'}
    end
    if attempt >= max then
      terminal(id, msg, record, events, exclusive, 'FAILURE', 'WorkerLostError',
        'the worker running attempt ' .. attempt .. ' of ' .. max .. ' was lost', f[10], ran)
      return {'lost'}
    end
  elseif f[4] and tonumber(f[4]) < tonumber(now) then
    terminal(id, msg, record, events, exclusive, 'REVOKED', 'Expired', 'the task expired before a worker could start it', f[10])
    return {'expired'}
  end

  local version = tonumber(f[7] or '0') + 1
  local set = {'version', version, 'state', 'STARTED', 'attempt', attempt + 1,
    'worker', worker, 'token', token, 'msg', msg, 'started', now, 'updated', now}
  redis.call('HSET', record, unpack(set))
  local del = {}
  -- What an earlier attempt may have left: a RETRY its due time and error, any its progress.
  if state == 'RETRY' or f[8] then
    del = {'next_at', 'err_type', 'err_msg', 'err_tb', 'progress'}
    redis.call('HDEL', record, unpack(del))
  end
  -- A task of a workflow: the workflow is STARTED from its first task's first attempt.
  if f[9] then wf.started(f[9], now) end
  -- Due: when it was queued or its countdown ended (PENDING), its backoff ended (RETRY).
  -- A task taken over from a lost worker has no wait of its own.
  local due
  if state == 'PENDING' then due = math.max(tonumber(f[12] or '0'), tonumber(f[13] or '0'))
  elseif state == 'RETRY' then due = tonumber(f[14] or '0') end
  if due then count_start(f[10] or '', tonumber(now) - due) end
  log_written(events, channel, maxlen, version, {'id', id, 'name', f[10], 'queue', f[CLAIM_AT.queue]}, set, del)
  local run = {'attempt', tostring(attempt + 1)}
  for _, name in ipairs(RUN_FIELDS) do
    local v = f[CLAIM_AT[name]]
    if v then
      run[#run + 1] = name
      run[#run + 1] = v
    end
  end
  return {'run', run}
end

local finished, claimed = {}, {}
for i = 1, tonumber(finishes) do
  local record, events, exclusive = key(3)
  local id, msg, token, target, next_at, n = arg(6)
  finished[i] = finish(id, msg, token, target, next_at, {arg(tonumber(n))}, record, events, exclusive)
end
for i = 1, tonumber(claims) do
  local record, events, exclusive = key(3)
  local id, msg, token = arg(3)
  claimed[i] = claim(id, msg, token, record, events, exclusive)
end
flush_counts(stats)
local reply = {finished, claimed}
drop_answered()
-- A call that found nothing to do changed nothing: run again, it does no harm.
if #finished + #claimed > 0 then
  redis.call('HSET', replies, nonce, cjson.encode(reply))
  redis.call('PEXPIRE', replies, keep)
end
return reply
