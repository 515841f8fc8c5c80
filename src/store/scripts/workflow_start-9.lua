-- workflow_start: create a workflow's record and plan and start its first tasks, atomically,
-- or refuse. The checks of the idempotency and exclusive keys are enqueue-n.lua's: a
-- workflow is created like a task, only never queued itself.
--
-- KEYS[1] record              taskwire:{q}:t:<id>
-- KEYS[2] events              taskwire:{q}:t:<id>:events
-- KEYS[3] index               taskwire:{q}:index
-- KEYS[4] latest              taskwire:{q}:latest
-- KEYS[5] exclusive           taskwire:{q}:excl:<key>     (unused when ARGV[6] is '')
-- KEYS[6] latest for key      taskwire:{q}:latest:<key>   (unused when ARGV[6] is '')
-- KEYS[7] idempotency         taskwire:{q}:idem:<key>     (unused when ARGV[7] is '')
-- KEYS[8] holder record       the record of ARGV[8]       (unused when ARGV[8] is '')
-- KEYS[9] plan                taskwire:{q}:t:<id>:plan
-- The keys of the tasks it creates (of any queue), and of the workflow's results, children
-- and live tasks, are named in the plan's meta, not passed in KEYS (see workflow.lua).
-- ARGV[1] id   ARGV[2] now (ms)   ARGV[3] events channel   ARGV[4] event log cap
-- ARGV[5] result TTL (ms)   ARGV[6] exclusive key or ''   ARGV[7] idempotency key or ''
-- ARGV[8] id the caller saw holding the exclusive key, or ''
-- ARGV[9] n, then n values: the record's fields as name, value pairs
-- then the plan's meta (JSON), then its nodes (JSON), from node 0 on
--
-- Returns {'created', version}; {'duplicate', id}; {'exists', id}; {'moved'} (as enqueue-n.lua's
-- refusals, or an error when the id exists).
local id, now = ARGV[1], tonumber(ARGV[2])
local ekey, ikey, expected = ARGV[6], ARGV[7], ARGV[8]

local k = {
  record = KEYS[1], index = KEYS[3], latest = KEYS[4], exclusive = KEYS[5],
  latest_for_key = KEYS[6], idem = KEYS[7], holder = KEYS[8],
}
local refusal = refuse_create(k, id, ikey, ekey, expected)
if refusal then return refusal end

local arg = reader(ARGV, 9)
local given = {arg(tonumber(arg(1)))}
local meta = arg(1)
local plan = KEYS[9]
local fields = {'meta', meta}
-- The nodes: every argument after the meta, from node 0 on. In slices: a Lua call takes a
-- bounded number of arguments.
local nodes = #ARGV - (10 + #given)
for node = 0, nodes - 1 do
  fields[#fields + 1] = tostring(node)
  fields[#fields + 1] = arg(1)
  if #fields >= 1000 then
    redis.call('HSET', plan, unpack(fields))
    fields = {}
  end
end
if #fields > 0 then redis.call('HSET', plan, unpack(fields)) end

create_record(KEYS[1], KEYS[2], ARGV[3], ARGV[4], given)

register_created(k, id, now, tonumber(ARGV[5]), ikey, ekey)

wf.metas[plan] = cjson.decode(meta)
wf.start(plan, wf.metas[plan], 0, nil, now)
return {'created', 1}
