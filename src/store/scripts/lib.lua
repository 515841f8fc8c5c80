-- Shared by every script that writes a task record; prepended at load time after the
-- state-machine prelude (allowed(from, to), is_terminal(state)) generated from
-- src/store/states.ts.

-- Tell the listeners of `channel` (a channel in the queue's hash slot) about a change or a
-- request. Sharded pub/sub: on a Redis Cluster only the shard that owns the slot delivers it,
-- to the clients subscribed there, instead of every node of the cluster; a standalone Redis
-- serves it the same way.
local function publish(channel, payload)
  redis.call('SPUBLISH', channel, payload)
end

-- Fields of the record that never travel in change events: immutable bulk and secrets.
-- (A table: looked up for every field of every change.)
local PRIVATE = {args = true, kwargs = true, token = true, msg = true}

-- Append the whole record's snapshot at `version` (already written) to the event log `events`
-- (entry id `<version>-0`, capped near `maxlen`) and publish it on `channel`. Returns the
-- fields named in `pick` (a set of field names, or nil for none) and the whole record, as
-- read (flat lists of name, value), so a caller needs no read of its own.
local function log_change(record, events, channel, maxlen, version, pick)
  local flat = redis.call('HGETALL', record)
  local snapshot, picked = {}, {}
  for i = 1, #flat, 2 do
    local field = flat[i]
    if not PRIVATE[field] then
      snapshot[#snapshot + 1] = field
      snapshot[#snapshot + 1] = flat[i + 1]
    end
    if pick and pick[field] then
      picked[#picked + 1] = field
      picked[#picked + 1] = flat[i + 1]
    end
  end
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, version .. '-0', unpack(snapshot))
  publish(channel, cjson.encode(snapshot))
  return picked, flat
end

-- Append to the event log `events` the entry of a change at `version` (already written)
-- that holds only what it wrote: `head` (id, name, queue: a flat list of name, value), then
-- the public fields of `set` (name, value pairs) and of `del` (names deleted, as ''), and
-- publish it on `channel`. `set` holds the state and version. Readers apply such an entry
-- onto the record at the version before (src/store/record.ts, applyEntry); a whole entry
-- holds `created`, which a change never writes.
local function log_written(events, channel, maxlen, version, head, set, del)
  local entry = head
  for i = 1, #set, 2 do
    if not PRIVATE[set[i]] then
      entry[#entry + 1] = set[i]
      entry[#entry + 1] = tostring(set[i + 1])
    end
  end
  for i = 1, #del do
    if not PRIVATE[del[i]] then
      entry[#entry + 1] = del[i]
      entry[#entry + 1] = ''
    end
  end
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, version .. '-0', unpack(entry))
  publish(channel, cjson.encode(entry))
end

-- Bump the record's version, then log_change(). Returns the new version and the record as
-- written (a flat list of name, value).
-- (A script that reads the version anyway sets it in its own HSET and calls log_change.)
local function emit(record, events, channel, maxlen)
  local version = redis.call('HINCRBY', record, 'version', 1)
  local _, flat = log_change(record, events, channel, maxlen, version)
  return version, flat
end

-- The queue's outcome counters, kept in its stats hash (same slot) by the scripts that write
-- the state, and read by /metrics when scraped: no change feed need be heard for them.
-- Fields (name parts joined by newlines): `e,<state>,<task>` ends without a run time,
-- `r,<state>,<task>,<bucket>` ends with one and `rs,<state>,<task>` their total ms,
-- `w,<task>,<bucket>` and `ws,<task>` the same for the wait before an attempt started.
-- A bucket is the index of the first bound of HISTOGRAM_MS (from the prelude) the time is
-- within, 0 beyond the last. The counts of one call are summed here and written by
-- flush_counts, one HINCRBY per field: the tasks of a worker's turn mostly share them.
local counts, counted = {}, {}
local function bucket_of(ms)
  for i = 1, #HISTOGRAM_MS do
    if ms <= HISTOGRAM_MS[i] then return i end
  end
  return 0
end

local function count(field, n)
  local before = counts[field]
  if before then
    counts[field] = before + n
  else
    counts[field] = n
    counted[#counted + 1] = field
  end
end

-- A task (or, for RETRY, an attempt) ended in `state`; `ran`: the run time of the attempt
-- it ended (ms), or nil when none was running.
local function count_end(task, state, ran)
  if ran then
    local head = state .. '\n' .. task
    count('r\n' .. head .. '\n' .. bucket_of(ran), 1)
    count('rs\n' .. head, math.max(0, ran))
  else
    count('e\n' .. state .. '\n' .. task, 1)
  end
end

-- An attempt of `task` started `waited` ms after it was due.
local function count_start(task, waited)
  count('w\n' .. task .. '\n' .. bucket_of(waited), 1)
  count('ws\n' .. task, math.max(0, waited))
end

-- Write the counts of this call to the stats hash `stats`.
local function flush_counts(stats)
  for _, field in ipairs(counted) do
    redis.call('HINCRBY', stats, field, counts[field])
  end
  counts, counted = {}, {}
end

-- Check that the record may move to `to`. Returns the current state, or nil and the
-- reason ('missing' or the current state) when it may not.
local function may_move(record, to)
  local from = redis.call('HGET', record, 'state')
  if not from then return nil, 'missing' end
  if not allowed(from, to) then return nil, from end
  return from
end

-- Workflows (chain, group, chord): the functions of workflow.lua, which is loaded after this
-- file and uses its helpers.
local wf = {}

-- What every terminal write does besides the state: free the exclusive key (if this task
-- holds it), start the result TTL of the record and its log, and, for a task of a workflow
-- (its record names the workflow's plan), advance the workflow: what comes next is started
-- by the same step that ends this task. `ekey`: the record's exclusive key when the caller
-- has read it (false: it has none), nil to read it here.
local function finalize(record, events, exclusive, id, ttl, ekey)
  if ekey == nil then ekey = redis.call('HGET', record, 'ekey') end
  if ekey and redis.call('GET', exclusive) == id then
    redis.call('DEL', exclusive)
  end
  redis.call('PEXPIRE', record, ttl)
  redis.call('PEXPIRE', events, ttl)
  local plan = redis.call('HGET', record, 'wf_plan')
  if plan then wf.advance(record, id, plan) end
end

-- Sort `fields` (a flat list of name, value) into `set` (name, value pairs to HSET) and
-- `del` (names to HDEL: an empty value deletes the field), appending to both.
local function split_fields(fields, set, del)
  for i = 1, #fields, 2 do
    if fields[i + 1] == '' then
      del[#del + 1] = fields[i]
    else
      set[#set + 1] = fields[i]
      set[#set + 1] = fields[i + 1]
    end
  end
end

-- Write a new task record at version 1 from `given` (a flat list of name, value), and log
-- and publish its snapshot as every other change is (log_change), without reading it back.
local function create_record(record, events, channel, maxlen, given)
  local fields, snapshot = {'version', '1'}, {'version', '1'}
  for i = 1, #given, 2 do
    local name, value = given[i], given[i + 1]
    fields[#fields + 1] = name
    fields[#fields + 1] = value
    if not PRIVATE[name] then
      snapshot[#snapshot + 1] = name
      snapshot[#snapshot + 1] = value
    end
  end
  redis.call('HSET', record, unpack(fields))
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '1-0', unpack(snapshot))
  publish(channel, cjson.encode(snapshot))
end

-- Put a created task where it waits for a worker: the scheduled set until `due` (ms) when
-- that is later than `now`, else the queue stream. `ekey`: its exclusive key, or ''.
-- Returns true when it went to the scheduled set (the caller tells workers when it is due).
local function queue_task(stream, scheduled, id, ekey, due, now)
  if due > now then
    redis.call('ZADD', scheduled, due, id .. '\n' .. ekey)
    return true
  end
  redis.call('XADD', stream, '*', 'id', id, 'k', ekey)
  return false
end

-- The checks before a task (or a workflow) with its own keys is created, as enqueue and
-- workflow_start make them. `k`: record, idem (its key), exclusive, holder (the record of
-- `expected`, the id the caller saw holding the exclusive key). Returns the refusal
-- ({'duplicate', id}, {'moved'}, {'exists', id}, or an error when the id exists), or nil.
local function refuse_create(k, id, ikey, ekey, expected)
  if ikey ~= '' then
    local existing = redis.call('GET', k.idem)
    if existing then return {'duplicate', existing} end
  end
  if ekey ~= '' then
    local holder = redis.call('GET', k.exclusive) or ''
    if holder ~= expected then return {'moved'} end
    if holder ~= '' then
      local state = redis.call('HGET', k.holder, 'state')
      if state and not is_terminal(state) then return {'exists', holder} end
    end
  end
  if redis.call('EXISTS', k.record) == 1 then
    return redis.error_reply('ERR task id ' .. id .. ' already exists')
  end
  return nil
end

-- What a created task (or workflow) with its own keys is entered in: the queue's index and
-- latest task, its exclusive key (held, and latest for the key), its idempotency key (for
-- the result TTL). `k`: index, latest, exclusive, latest_for_key, idem.
local function register_created(k, id, now, ttl, ikey, ekey)
  redis.call('ZADD', k.index, now, id)
  redis.call('ZREMRANGEBYSCORE', k.index, '-inf', now - ttl)
  redis.call('SET', k.latest, id)
  if ekey ~= '' then
    redis.call('SET', k.exclusive, id)
    redis.call('SET', k.latest_for_key, id)
  end
  if ikey ~= '' then redis.call('SET', k.idem, id, 'PX', ttl) end
end

local function slice(list, from)
  local out = {}
  for i = from, #list do out[#out + 1] = list[i] end
  return out
end

-- A reader of `list` (KEYS or ARGV) from its element `from` on, for scripts whose arguments
-- come as runs of named fields: `local id, msg = next_of(2)` names the next two.
local function reader(list, from)
  local at = from - 1
  return function(n)
    local first = at + 1
    at = at + n
    return unpack(list, first, at)
  end
end
