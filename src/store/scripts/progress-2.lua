-- progress: record the progress a running attempt reports, without changing its state.
--
-- KEYS[1] record   taskwire:{q}:t:<id>
-- KEYS[2] events   taskwire:{q}:t:<id>:events
-- ARGV[1] attempt token   ARGV[2] progress (JSON object)   ARGV[3] now (ms)
-- ARGV[4] events channel  ARGV[5] log cap
--
-- Returns {'ok', version}, or {'stale', state} when the attempt is no longer current.
local f = redis.call('HMGET', KEYS[1], 'state', 'token')
if f[1] ~= 'STARTED' or f[2] ~= ARGV[1] then return {'stale', f[1] or 'missing'} end
redis.call('HSET', KEYS[1], 'progress', ARGV[2], 'updated', ARGV[3])
return {'ok', (emit(KEYS[1], KEYS[2], ARGV[4], ARGV[5]))}
