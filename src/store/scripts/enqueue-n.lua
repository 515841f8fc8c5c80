-- enqueue: create task records of one queue and queue them, in order. Every Start comes
-- here: concurrent Starts of one queue share a call (a group commit, EnqueueBatcher), so
-- Redis runs one script for many tasks; a Start with an exclusive key comes alone, behind
-- its key's lock (ExclusiveGuard). Each task is one all-or-nothing step of this script:
-- checked, then written whole, or refused with nothing written.
--
-- Every key it touches is in KEYS (all share the queue's hash tag: one Cluster slot).
-- KEYS[1] stream     taskwire:{q}:stream
-- KEYS[2] scheduled  taskwire:{q}:scheduled
-- KEYS[3] index      taskwire:{q}:index
-- KEYS[4] latest     taskwire:{q}:latest
-- then per task, in the order of the tasks: record taskwire:{q}:t:<id>, events
--   taskwire:{q}:t:<id>:events, idempotency taskwire:{q}:idem:<key> (taskwire:{q}:idem:
--   when it has none: never written); and for a task with an exclusive key: exclusive
--   taskwire:{q}:excl:<key>, latest for key taskwire:{q}:latest:<key>, and the record of
--   the id the caller saw holding the key (taskwire:{q}:t: when none)
-- ARGV[1] now (ms)   ARGV[2] events channel   ARGV[3] event log cap   ARGV[4] result TTL (ms)
-- ARGV[5] control channel (told `due\n<ms>` of the earliest countdown, so workers wake for it)
-- ARGV[6] the tasks, as one JSON array (one argument, not ~35 per task: Redis and the client
--   pay per argument), each [id, created (ms, its score in the index), due (ms; '0' = run
--   now), idempotency key or '', exclusive key or '', id the caller saw holding the
--   exclusive key or '', [the record's fields as name, value pairs]], all strings
--
-- Returns two values per task, in order: 'created', version; 'duplicate', id of the task the
-- idempotency key already names; 'exists', id of the unfinished task holding the exclusive
-- key; 'moved', '' when the holder changed since the caller looked (the caller looks again
-- and retries); or 'id_taken', id (a record with this id exists).
local stream, scheduled, index_key, latest_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, channel, maxlen, ttl = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4])
local control, tasks = ARGV[5], cjson.decode(ARGV[6])
local key = reader(KEYS, 5)
local out, index, earliest, latest = {}, {}, nil, nil

for _, task in ipairs(tasks) do
  local id, created, due, ikey, ekey, expected, given = unpack(task)
  due = tonumber(due)
  local record, events, idem = key(3)
  local refusal
  if ekey ~= '' then
    local k = {record = record, idem = idem}
    k.exclusive, k.latest_for_key, k.holder = key(3)
    refusal = refuse_create(k, id, ikey, ekey, expected)
    if refusal and refusal.err then refusal = {'id_taken', id} end
    if not refusal then
      redis.call('SET', k.exclusive, id)
      redis.call('SET', k.latest_for_key, id)
    end
  else
    -- The checks of refuse_create for a task without an exclusive key, inline: most Starts.
    local existing = ikey ~= '' and redis.call('GET', idem)
    if existing then
      refusal = {'duplicate', existing}
    elseif redis.call('EXISTS', record) == 1 then
      refusal = {'id_taken', id}
    end
  end
  if refusal then
    out[#out + 1] = refusal[1]
    out[#out + 1] = refusal[2] or ''
  else
    create_record(record, events, channel, maxlen, given)
    if ikey ~= '' then redis.call('SET', idem, id, 'PX', ttl) end
    index[#index + 1] = created
    index[#index + 1] = id
    latest = id
    if queue_task(stream, scheduled, id, ekey, due, now) and (not earliest or due < earliest) then
      earliest = due
    end
    out[#out + 1] = 'created'
    out[#out + 1] = 1
  end
end

if latest then
  redis.call('ZADD', index_key, unpack(index))
  redis.call('ZREMRANGEBYSCORE', index_key, '-inf', now - ttl)
  redis.call('SET', latest_key, latest)
end
if earliest then publish(control, 'due\n' .. earliest) end
return out
