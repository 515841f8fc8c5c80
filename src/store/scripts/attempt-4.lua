-- attempt: a worker's writes to the tasks of one queue in one turn of its event loop, in
-- this order:
--   1. finish: end the current attempt of tasks it ran (SUCCESS, FAILURE, REVOKED, RETRY, or
--      PENDING when handed back at shutdown);
--   2. claim: begin an attempt of each task whose message it was handed (read by a blocking
--      read, or reclaimed from a worker that stopped renewing its lease);
--   3. take: read up to N new messages of the queue for it (as a non-blocking XREADGROUP
--      would) and begin those.
-- So a slot freed by a finish gets its next task, begun, in the same call, as BullMQ's
-- moveToFinished does; and since the finishes come first, a worker never has more tasks
-- STARTED than slots. Redis pays the per-call cost of a script once for the whole turn; each
-- finish and claim is still its own checked change.
--
-- Only the attempt named by the token may finish a task; a cancel request turns any outcome
-- (hand-back included) into REVOKED, so a late result never overwrites a revocation. A claim
-- decides whether the task runs.
--
-- A call's reply can be lost (the connection dropped after Redis ran it), and ioredis then
-- sends the call again once it reconnects, as the worker does when a call fails for want
-- of a connection. Run twice, the call would begin a second batch of tasks, and the first,
-- begun but never run or renewed, would later be failed as a lost worker's. So each call
-- carries a nonce, and its reply is kept in the worker's reply hash (KEYS[3]) under that
-- nonce: a call sent again gets the reply of its first run and changes nothing. The worker
-- names in each call the nonces whose replies it has received, which are then dropped; the
-- hash expires when the worker stops calling.
--
-- KEYS[1] stream      taskwire:{q}:stream
-- KEYS[2] scheduled   taskwire:{q}:scheduled
-- KEYS[3] replies     taskwire:{q}:replies:<worker>
-- KEYS[4] stats       taskwire:{q}:stats (outcome counters: count_end, flush_counts in lib.lua)
-- The tasks' own keys are named here from the three prefixes below, as store/keys.ts names
--   them (they share the queue's hash tag, so one Cluster slot), rather than sent: record
--   taskwire:{q}:t:<id>, events taskwire:{q}:t:<id>:events, exclusive
--   taskwire:{q}:excl:<key> (a dummy when the task has none)
-- ARGV[1] consumer group   ARGV[2] worker name (the consumer)   ARGV[3] now (ms)
-- ARGV[4] events channel   ARGV[5] log cap   ARGV[6] result TTL (ms)
-- ARGV[7] finishes   ARGV[8] claims   ARGV[9] messages to take at most
-- ARGV[10] record key prefix (taskwire:{q}:t:)   ARGV[11] event log suffix (:events)
-- ARGV[12] exclusive key prefix (taskwire:{q}:excl:)
-- ARGV[13] this call's nonce   ARGV[14] how long its reply is kept (ms)
-- ARGV[15] n, then n nonces of calls whose replies the worker received
-- then per finish: id, message id, attempt token, target state, with RETRY when the next
--   attempt is due (ms, else 0), exclusive key or '', n, and n values: fields to write as
--   name, value pairs ('' deletes)
-- then per claim: id, message id, attempt token, exclusive key or ''
-- then one attempt token per message to take
--
-- Returns {finish replies, claim replies, take replies}, each in order:
-- finish: {'ok', state written, version}; {'stale', current state} when the token is not the
--   current attempt's (nothing written, the message is left to its owner); {'gone'} (the
--   record expired: the message is acknowledged).
-- claim: {'run', <fields as a flat list of name, value>} when the worker must run it now
--   (only the fields a worker uses: RUN_FIELDS); otherwise the message is acknowledged and
--   the reply says why it does not run: {'gone'} (record expired or never written),
--   {'finished', state} (already terminal), {'expired'}, {'revoked'} (cancelled while its
--   worker was lost), {'lost'} (its worker died and no attempts are left: FAILURE
--   WorkerLostError).
-- take: per message read, {message id, task id, exclusive key, claim reply}.
-- A call sent again returns instead the JSON text of its first reply.
local stream, scheduled = KEYS[1], KEYS[2]
local group, worker, now = ARGV[1], ARGV[2], ARGV[3]
local channel, maxlen, ttl = ARGV[4], ARGV[5], ARGV[6]
local finishes, claims, takes = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local taskPrefix, eventsSuffix, exclPrefix = ARGV[10], ARGV[11], ARGV[12]
local replies, nonce, keep = KEYS[3], ARGV[13], ARGV[14]
local stats = KEYS[4]

local answered = tonumber(ARGV[15])
-- Dropped only after the call's own writes: Redis at maxmemory refuses a script's first
-- write but lets through the ones after it, so the tasks' writes must come first.
local function drop_answered()
  if answered == 0 then return end
  local done = {}
  for i = 1, answered do done[i] = ARGV[15 + i] end
  redis.call('HDEL', replies, unpack(done))
end
local earlier = redis.call('HGET', replies, nonce)
if earlier then
  drop_answered()
  return earlier
end

-- What a worker needs of a task it runs (each string of a reply costs Redis and the worker).
local RUN_FIELDS = {name = true, args = true, kwargs = true, attempt = true, max_attempts = true,
  time_limit = true, backoff_initial = true, backoff_max = true, retry_on = true, traceparent = true}

-- The entry stays in the stream until a worker trims the stream (trim-1.lua).
local function ack(msg)
  redis.call('XACK', stream, group, msg)
end

local function finish(id, msg, token, target, next_at, fields, record, events, exclusive)
  local f = redis.call('HMGET', record, 'state', 'token', 'cancel', 'cancel_reason', 'ekey', 'version', 'attempt', 'name', 'started')
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
  log_change(record, events, channel, maxlen, version)
  if target ~= 'PENDING' then count_end(f[8] or '', target, f[9] and tonumber(now) - tonumber(f[9])) end
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
  local f = redis.call('HMGET', record, 'state', 'attempt', 'max_attempts', 'expires', 'cancel', 'cancel_reason', 'version', 'progress', 'wf_plan',
    'name', 'started', 'updated', 'not_before', 'next_at')
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
  redis.call('HSET', record, 'version', version, 'state', 'STARTED', 'attempt', attempt + 1,
    'worker', worker, 'token', token, 'msg', msg, 'started', now, 'updated', now)
  -- What an earlier attempt may have left: a RETRY its due time and error, any its progress.
  if state == 'RETRY' or f[8] then
    redis.call('HDEL', record, 'next_at', 'err_type', 'err_msg', 'err_tb', 'progress')
  end
  -- A task of a workflow: the workflow is STARTED from its first task's first attempt.
  if f[9] then wf.started(f[9], now) end
  -- Due: when it was queued or its countdown ended (PENDING), its backoff ended (RETRY).
  -- A task taken over from a lost worker has no wait of its own.
  local due
  if state == 'PENDING' then due = math.max(tonumber(f[12] or '0'), tonumber(f[13] or '0'))
  elseif state == 'RETRY' then due = tonumber(f[14] or '0') end
  if due then count_start(f[10] or '', tonumber(now) - due) end
  return {'run', (log_change(record, events, channel, maxlen, version, RUN_FIELDS))}
end

local finished, claimed, taken = {}, {}, {}
-- A task's record, event log and exclusive keys.
local function task_keys(id, key)
  local record = taskPrefix .. id
  return record, record .. eventsSuffix, exclPrefix .. key
end

local a = 16 + answered
for i = 1, finishes do
  local n = tonumber(ARGV[a + 6])
  local fields = {}
  for j = a + 7, a + 6 + n do fields[#fields + 1] = ARGV[j] end
  local record, events, exclusive = task_keys(ARGV[a], ARGV[a + 5])
  finished[i] = finish(ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], fields, record, events, exclusive)
  a = a + 7 + n
end
for i = 1, claims do
  local record, events, exclusive = task_keys(ARGV[a], ARGV[a + 3])
  claimed[i] = claim(ARGV[a], ARGV[a + 1], ARGV[a + 2], record, events, exclusive)
  a = a + 4
end
if takes > 0 then
  local read = redis.call('XREADGROUP', 'GROUP', group, worker, 'COUNT', takes, 'STREAMS', stream, '>')
  local entries = read and read[1] and read[1][2] or {}
  for _, entry in ipairs(entries) do
    local msg, fields, id, key = entry[1], entry[2] or {}, nil, ''
    for f = 1, #fields - 1, 2 do
      if fields[f] == 'id' then id = fields[f + 1] elseif fields[f] == 'k' then key = fields[f + 1] end
    end
    -- A message without a task id is not a task (left as an XREADGROUP reader leaves it).
    if id then
      local n = #taken + 1
      taken[n] = {msg, id, key, claim(id, msg, ARGV[a + n - 1], task_keys(id, key))}
    end
  end
end
flush_counts(stats)
local reply = {finished, claimed, taken}
drop_answered()
-- A call that found nothing to do changed nothing: run again, it does no harm.
if #finished + #claimed + #taken > 0 then
  redis.call('HSET', replies, nonce, cjson.encode(reply))
  redis.call('PEXPIRE', replies, keep)
end
return reply
