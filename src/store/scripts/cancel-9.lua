-- cancel: a cancel request, written to the record before anyone is told.
-- A waiting task (PENDING, RETRY) is REVOKED at once and never runs; a running one gets
-- `cancel` set (abort or terminate) and its worker is told on the control channel (it
-- also sees the flag on its next lease renewal); a finished one is left as it is.
--
-- Every key it touches is in KEYS (all share the queue's hash tag: one Cluster slot). The
-- exclusive key is the caller's to name, from the record's `ekey`: a caller that named
-- another one (it has not read the record: most tasks have none) is told which, with
-- nothing written, and calls again.
-- KEYS[1] record      taskwire:{q}:t:<id>
-- KEYS[2] events      taskwire:{q}:t:<id>:events
-- KEYS[3] scheduled   taskwire:{q}:scheduled
-- KEYS[4] exclusive   taskwire:{q}:excl:<ARGV[9]>
-- KEYS[5..8] when the id is a workflow's, its plan, results, children and live tasks
--   (taskwire:{q}:t:<id>:plan, :results, :children, :live), which its end writes
-- KEYS[9] stats       taskwire:{q}:stats (outcome counters: count_end, flush_counts in lib.lua)
-- ARGV[1] id   ARGV[2] now (ms)   ARGV[3] mode: 'abort' or 'terminate'   ARGV[4] reason
-- ARGV[5] events channel   ARGV[6] log cap   ARGV[7] result TTL (ms)   ARGV[8] control channel
-- ARGV[9] the exclusive key KEYS[4] is named after, or ''
--
-- Returns {outcome, record}: the outcome 'revoked', 'requested' or 'finished', and the record
-- as this step left it (a flat list of name, value), so the caller reports the state its
-- cancel produced, not a later one (a terminated task's worker may write REVOKED at once);
-- or {'missing'}; or {'workflow', record} for a workflow, now REVOKED (workflow.lua); or
-- {'exclusive', key} when the record's exclusive key is not the one named (nothing written).
local record, events, scheduled, exclusive = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, now, mode, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local channel, maxlen, ttl, control, named = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local f = redis.call('HMGET', record, 'state', 'ekey', 'cancel', 'workflow', 'name')
local state, ekey = f[1], f[2] or ''
if not state then return {'missing'} end
if is_terminal(state) then return {'finished', redis.call('HGETALL', record)} end
if ekey ~= named then return {'exclusive', ekey} end

if f[4] then
  -- A workflow: REVOKED at once, so that nothing more of it starts; the caller then cancels
  -- its tasks that have not finished. (The keys its end writes, named in its plan's meta,
  -- are KEYS[1..2] and KEYS[4..8].)
  wf.revoke(f[4], reason, now)
  return {'workflow', redis.call('HGETALL', record)}
end

if state == 'STARTED' then
  -- Escalate abort → terminate, never the other way.
  local written
  if f[3] ~= 'terminate' then
    redis.call('HSET', record, 'cancel', mode, 'cancel_reason', reason, 'updated', now)
    written = select(2, emit(record, events, channel, maxlen))
  end
  publish(control, id .. '\n' .. (f[3] == 'terminate' and 'terminate' or mode))
  return {'requested', written or redis.call('HGETALL', record)}
end

if not allowed(state, 'REVOKED') then return {'finished', redis.call('HGETALL', record)} end
redis.call('HSET', record, 'state', 'REVOKED', 'err_type', 'TaskRevokedError', 'err_msg', reason,
  'finished', now, 'updated', now)
redis.call('HDEL', record, 'next_at')
redis.call('ZREM', scheduled, id .. '\n' .. ekey)
finalize(record, events, exclusive, id, ttl, f[2] or false)
local _, written = emit(record, events, channel, maxlen)
count_end(f[5] or '', 'REVOKED')
flush_counts(KEYS[9])
return {'revoked', written}
