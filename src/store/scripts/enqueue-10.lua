-- enqueue: create a task record and queue it, atomically, or refuse.
--
-- KEYS[1]  record              taskwire:{q}:t:<id>
-- KEYS[2]  events              taskwire:{q}:t:<id>:events
-- KEYS[3]  stream              taskwire:{q}:stream
-- KEYS[4]  scheduled           taskwire:{q}:scheduled
-- KEYS[5]  index               taskwire:{q}:index
-- KEYS[6]  latest              taskwire:{q}:latest
-- KEYS[7]  exclusive           taskwire:{q}:excl:<key>     (unused when ARGV[7] is '')
-- KEYS[8]  latest for key      taskwire:{q}:latest:<key>   (unused when ARGV[7] is '')
-- KEYS[9]  idempotency         taskwire:{q}:idem:<key>     (unused when ARGV[8] is '')
-- KEYS[10] holder record       the record of ARGV[9]       (unused when ARGV[9] is '')
-- ARGV[1] id   ARGV[2] now (ms)   ARGV[3] due (ms; 0 = run now)   ARGV[4] events channel
-- ARGV[5] event log cap   ARGV[6] result TTL (ms)   ARGV[7] exclusive key or ''
-- ARGV[8] idempotency key or ''   ARGV[9] id the caller saw holding the exclusive key, or ''
-- ARGV[10] control channel (told `due\n<ms>` of a countdown, so workers wake for it)
-- ARGV[11..] the record's fields, as name, value pairs
--
-- Returns {'created', version}; {'duplicate', id} when the idempotency key already names a
-- task; {'exists', id} when a non-terminal task holds the exclusive key; {'moved'} when the
-- holder changed since the caller looked (the caller looks again and retries).
local id, now, due = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local ekey, ikey, expected = ARGV[7], ARGV[8], ARGV[9]

local k = {
  record = KEYS[1], index = KEYS[5], latest = KEYS[6], exclusive = KEYS[7],
  latest_for_key = KEYS[8], idem = KEYS[9], holder = KEYS[10],
}
local refusal = refuse_create(k, id, ikey, ekey, expected)
if refusal then return refusal end

create_record(KEYS[1], KEYS[2], ARGV[4], ARGV[5], slice(ARGV, 11))

register_created(k, id, now, tonumber(ARGV[6]), ikey, ekey)

if queue_task(KEYS[3], KEYS[4], id, ekey, due, now) then
  publish(ARGV[10], 'due\n' .. due)
end
return {'created', 1}
