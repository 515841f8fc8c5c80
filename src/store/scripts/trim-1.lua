-- trim: remove the entries of a queue stream that the consumer group is done with. An
-- acknowledged message is not deleted one by one (an XDEL per task makes Redis rescan the
-- deleted entries at the head of the stream each time); workers trim in bulk instead. An
-- entry is done when it was delivered (not after the group's last-delivered id) and is no
-- longer pending (not at or after the oldest unacknowledged one): XTRIM MINID keeps
-- everything from the oldest entry that is either.
--
-- KEYS[1] stream   taskwire:{q}:stream
-- ARGV[1] consumer group
--
-- Returns the number of entries removed.
local stream, group = KEYS[1], ARGV[1]
if redis.call('EXISTS', stream) == 0 then return 0 end

local pending, last
for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  if info['name'] == group then
    pending, last = info['pending'], info['last-delivered-id']
  end
end
if not last then return 0 end

local keep
if pending > 0 then
  keep = redis.call('XPENDING', stream, group)[2]
else
  -- Everything delivered is done: keep from the id just after the last one delivered.
  local ms, seq = string.match(last, '^(%d+)-(%d+)$')
  if not ms or #seq > 12 then
    keep = last
  else
    keep = ms .. '-' .. (tonumber(seq) + 1)
  end
end
return redis.call('XTRIM', stream, 'MINID', keep)
