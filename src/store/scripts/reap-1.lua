-- reap: remove from a queue's consumer group the consumers that hold nothing and have not
-- been heard from for a while: the names of workers that stopped (each worker process reads
-- under a name of its own, so without this the group would list every worker that ever
-- ran). A consumer is removed only with no pending message, checked in the same step: a
-- message pending for a removed consumer would leave the group's pending list and never be
-- delivered again. A live worker whose name is removed while it is idle on this queue gets
-- it back with its next read.
--
-- KEYS[1] stream   taskwire:{q}:stream
-- ARGV[1] consumer group   ARGV[2] idle for at least (ms)   ARGV[3] a name never removed
--   (the caller's own)
--
-- Returns the names removed (none when the stream or its group is not there: a Redis that
-- restarted empty; the workers' reads make the group again).
local stream, group, idle, keep = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3]
local consumers = redis.pcall('XINFO', 'CONSUMERS', stream, group)
if consumers.err then return {} end

local removed = {}
for _, c in ipairs(consumers) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  if info['name'] ~= keep and tonumber(info['pending']) == 0 and tonumber(info['idle']) >= idle then
    redis.call('XGROUP', 'DELCONSUMER', stream, group, info['name'])
    removed[#removed + 1] = info['name']
  end
end
return removed
