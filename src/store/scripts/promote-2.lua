-- promote: move scheduled tasks whose time has come (countdown, retry backoff) onto the
-- queue stream. Waiting work never sits in the stream, so no redelivery clock runs on it.
--
-- KEYS[1] scheduled   taskwire:{q}:scheduled   (members: `<id>\n<exclusive key>`)
-- KEYS[2] stream      taskwire:{q}:stream
-- ARGV[1] now (ms)   ARGV[2] most to move in one call
--
-- Returns {moved, due time of the next scheduled task in ms or -1}.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local nl = string.find(member, '\n', 1, true)
  redis.call('XADD', KEYS[2], '*', 'id', string.sub(member, 1, nl - 1), 'k', string.sub(member, nl + 1))
end
if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {#due, nxt[2] or '-1'}
