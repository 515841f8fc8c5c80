-- cancel: a cancel request, written to the record before anyone is told.
-- A waiting task (PENDING, RETRY) is REVOKED at once and never runs; a running one gets
-- `cancel` set (abort or terminate) and its worker is told on the control channel (it
-- also sees the flag on its next lease renewal); a finished one is left as it is.
--
-- KEYS[1] record      taskwire:{q}:t:<id>
-- KEYS[2] events      taskwire:{q}:t:<id>:events
-- KEYS[3] scheduled   taskwire:{q}:scheduled
-- KEYS[4] stats       taskwire:{q}:stats (outcome counters: count_end, flush_counts in lib.lua)
-- ARGV[1] id   ARGV[2] now (ms)   ARGV[3] mode: 'abort' or 'terminate'   ARGV[4] reason
-- ARGV[5] events channel   ARGV[6] log cap   ARGV[7] result TTL (ms)   ARGV[8] control channel
-- ARGV[9] exclusive key prefix (taskwire:{q}:excl:): the task's exclusive key is named here
--   from the record's `ekey`, as store/keys.ts names it (same hash tag, so one Cluster slot),
--   so the caller need not read the record first
--
-- Returns {outcome, record}: the outcome 'revoked', 'requested' or 'finished', and the record
-- as this step left it (a flat list of name, value), so the caller reports the state its
-- cancel produced, not a later one (a terminated task's worker may write REVOKED at once);
-- or {'missing'}; or {'workflow', record} for a workflow, now REVOKED (workflow.lua).
local id, now, mode, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local record, events = KEYS[1], KEYS[2]
local f = redis.call('HMGET', record, 'state', 'ekey', 'cancel', 'workflow', 'name')
local state = f[1]
if not state then return {'missing'} end
if is_terminal(state) then return {'finished', redis.call('HGETALL', record)} end

if f[4] then
  -- A workflow: REVOKED at once, so that nothing more of it starts; the caller then cancels
  -- its tasks that have not finished.
  wf.revoke(f[4], reason, now)
  return {'workflow', redis.call('HGETALL', record)}
end

if state == 'STARTED' then
  -- Escalate abort → terminate, never the other way.
  local written
  if f[3] ~= 'terminate' then
    redis.call('HSET', record, 'cancel', mode, 'cancel_reason', reason, 'updated', now)
    written = select(2, emit(record, events, ARGV[5], ARGV[6]))
  end
  publish(ARGV[8], id .. '\n' .. (f[3] == 'terminate' and 'terminate' or mode))
  return {'requested', written or redis.call('HGETALL', record)}
end

if not allowed(state, 'REVOKED') then return {'finished', redis.call('HGETALL', record)} end
redis.call('HSET', record, 'state', 'REVOKED', 'err_type', 'TaskRevokedError', 'err_msg', reason,
  'finished', now, 'updated', now)
redis.call('HDEL', record, 'next_at')
redis.call('ZREM', KEYS[3], id .. '\n' .. (f[2] or ''))
finalize(record, events, ARGV[9] .. (f[2] or ''), id, ARGV[7], f[2] or false)
local _, written = emit(record, events, ARGV[5], ARGV[6])
count_end(f[5] or '', 'REVOKED')
flush_counts(KEYS[4])
return {'revoked', written}
