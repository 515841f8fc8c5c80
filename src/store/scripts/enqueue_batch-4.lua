-- enqueue_batch: create task records of one queue and queue them, in order. The Start of
-- every task without an exclusive key comes here; concurrent Starts of one queue share a
-- call (a group commit), so Redis runs one script for many tasks. Each task is still one
-- all-or-nothing step of this script: checked, then written whole, or refused with nothing
-- written.
--
-- KEYS[1] stream     taskwire:{q}:stream
-- KEYS[2] scheduled  taskwire:{q}:scheduled
-- KEYS[3] index      taskwire:{q}:index
-- KEYS[4] latest     taskwire:{q}:latest
-- and per task, named here from the prefixes below as store/keys.ts names them (the same
--   hash tag, so the same Cluster slot): record taskwire:{q}:t:<id>, events
--   taskwire:{q}:t:<id>:events, idempotency taskwire:{q}:idem:<key>
-- ARGV[1] now (ms)   ARGV[2] events channel   ARGV[3] event log cap   ARGV[4] result TTL (ms)
-- ARGV[5] control channel (told `due\n<ms>` of the earliest countdown, so workers wake for it)
-- ARGV[6] record key prefix (taskwire:{q}:t:)   ARGV[7] event log suffix (:events)
-- ARGV[8] idempotency key prefix (taskwire:{q}:idem:)
-- ARGV[9] the tasks, as one JSON array (one argument, not ~35 per task: Redis and the client
--   pay per argument), each [id, created (ms, its score in the index), due (ms; '0' = run
--   now), idempotency key or '', [the record's fields as name, value pairs]], all strings
--
-- Returns two values per task, in order: 'created', version; 'duplicate', id of the task the
-- idempotency key already names; or 'exists', id (a record with this id exists: refused).
local now, channel, maxlen, ttl = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4])
local out, index, earliest, latest = {}, {}, nil, nil

local taskPrefix, eventsSuffix, idemPrefix = ARGV[6], ARGV[7], ARGV[8]

for _, task in ipairs(cjson.decode(ARGV[9])) do
  local id, created, due, ikey, given = task[1], task[2], tonumber(task[3]), task[4], task[5]
  local record, idem = taskPrefix .. id, idemPrefix .. ikey
  local events = record .. eventsSuffix

  local existing = ikey ~= '' and redis.call('GET', idem)
  if existing then
    out[#out + 1] = 'duplicate'
    out[#out + 1] = existing
  elseif redis.call('EXISTS', record) == 1 then
    out[#out + 1] = 'exists'
    out[#out + 1] = id
  else
    create_record(record, events, channel, maxlen, given)
    if ikey ~= '' then redis.call('SET', idem, id, 'PX', ttl) end
    index[#index + 1] = created
    index[#index + 1] = id
    latest = id
    if queue_task(KEYS[1], KEYS[2], id, '', due, now) and (not earliest or due < earliest) then
      earliest = due
    end
    out[#out + 1] = 'created'
    out[#out + 1] = 1
  end
end

if latest then
  redis.call('ZADD', KEYS[3], unpack(index))
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - ttl)
  redis.call('SET', KEYS[4], latest)
end
if earliest then publish(ARGV[5], 'due\n' .. earliest) end
return out
