-- Workflows (Celery's canvas: chain, group, chord), advanced by the scripts that write task
-- records. Loaded after lib.lua (whose `wf` table these functions fill), so every script
-- that ends a task can advance the workflow the task belongs to, in the same step.
--
-- A workflow is a task record of its own (field `workflow`: the key of its plan) that is
-- never queued. Its plan, compiled by src/store/workflowPlan.ts, is a hash of nodes by index
-- (0 is the root), each a JSON object:
--   k     'task', 'chain' or 'group' (a chord is compiled as a chain of its header group and
--         its body: the header's list of results is the body's first argument)
--   p     the parent's index (-1 for the root)   pk the parent's kind
--   nx    in a chain, the index of the next step (none for the last)
--   sib   in a group, how many members the group has
--   im    the node does not receive the previous result
--   hc    the node is inside a chord's header (its failure is the chord's ChordError)
--   ch    a chain's or group's children, in order
--   q, id, a, cd, nb, f   a task: its queue, its id (made when the plan was compiled), its
--         args (JSON text), its countdown (ms, counted from its creation), its earliest
--         start (ms since epoch, or 0), and the other fields of its record (name, value)
-- and a field `meta`: the workflow's id and key names, the key names of each queue its
-- tasks use (qs), its number of tasks (n), the event log cap and the result TTL.
--
-- A task node's record is created only when the node is reached: the steps after a failure
-- are never created. A group's members' results are kept by member in the results hash, and
-- a counter per group (`#<index>`) says how many have finished, so each finish costs the
-- same whatever the group's size, and the list is read once, when the last member finishes.
-- Results are spliced as JSON text, never decoded, so they reach the next step as written.
--
-- These functions are the one place where scripts name keys themselves rather than take
-- them in KEYS: the keys of the workflow (its record, log, plan's results, children, live
-- tasks, exclusive key) and of each task it creates when a step is reached, from the key
-- names and prefixes in the plan's meta, since only the plan knows which task comes next.
-- On one Redis that is safe. On a Redis Cluster, Redis checks a key a script names itself
-- only when the script reaches it: it must hash to the slot of the call's KEYS (else the
-- script fails there: "keys that do not hash to the same slot") and be on this node. So a
-- workflow whose tasks use another queue than its own fails on a Cluster, and while the
-- slot of a workflow's queue migrates, a step that reaches a key already moved fails at
-- that command, after the writes before it (a script is not rolled back). A workflow whose
-- tasks all use its own queue works on a Cluster while its slot stays where it is.

wf.metas = {}

-- The plan's meta (decoded once per script call: it never changes).
function wf.meta(plan)
  local m = wf.metas[plan]
  if not m then
    m = cjson.decode(redis.call('HGET', plan, 'meta'))
    wf.metas[plan] = m
  end
  return m
end

function wf.node(plan, i)
  return cjson.decode(redis.call('HGET', plan, tostring(i)))
end

-- Create the record of task node `n` (index i) and queue it. `input`: the previous result
-- (JSON text) to put before its args, or nil.
function wf.create(plan, m, i, n, input, now)
  local q = m.qs[n.q]
  local record = q.t .. n.id
  if redis.call('EXISTS', record) == 1 then return end
  local args = n.a
  if input then
    if args == '[]' then args = '[' .. input .. ']' else args = '[' .. input .. ',' .. args:sub(2) end
  end
  local due = now + tonumber(n.cd)
  local nb = tonumber(n.nb)
  if nb > due then due = nb end
  local given = {'id', n.id, 'created', tostring(now), 'updated', tostring(now), 'args', args,
    'parent', m.id, 'wf_plan', plan, 'wf_node', tostring(i)}
  if due > now then
    given[#given + 1] = 'not_before'
    given[#given + 1] = tostring(due)
  end
  for _, v in ipairs(n.f) do given[#given + 1] = v end
  create_record(record, record .. q.ev, q.c, m.cap, given)
  redis.call('ZADD', q.x, now, n.id)
  redis.call('RPUSH', m.kids, n.id)
  redis.call('SADD', m.live, n.id)
  if queue_task(q.s, q.z, n.id, '', due, now) then
    publish(q.o, 'due\n' .. tostring(due))
  end
end

-- Start node i: create the task(s) it begins with.
function wf.start(plan, m, i, input, now)
  local n = wf.node(plan, i)
  if n.im then input = nil end
  if n.k == 'task' then
    wf.create(plan, m, i, n, input, now)
  elseif n.k == 'chain' then
    wf.start(plan, m, n.ch[1], input, now)
  else
    for _, c in ipairs(n.ch) do wf.start(plan, m, c, input, now) end
  end
end

-- The results of a group's members `ch`, in order, as a JSON list (text).
function wf.collect(results, ch)
  local out = {}
  -- In slices: a Lua call takes a bounded number of arguments.
  for from = 1, #ch, 1000 do
    local fields = {}
    for j = from, math.min(from + 999, #ch) do fields[#fields + 1] = tostring(ch[j]) end
    local values = redis.call('HMGET', results, unpack(fields))
    for j = 1, #fields do out[#out + 1] = values[j] or 'null' end
  end
  return '[' .. table.concat(out, ',') .. ']'
end

-- Node i (decoded: n) succeeded with result r: record it, and start what comes next.
-- Returns the workflow's result when this completed the root, else nil.
function wf.done(plan, m, i, n, r, now)
  while n.p >= 0 do
    if n.nx then
      wf.start(plan, m, n.nx, r, now)
      return nil
    end
    if n.pk == 'group' then
      redis.call('HSET', m.res, tostring(i), r)
      if redis.call('HINCRBY', m.res, '#' .. n.p, 1) < n.sib then return nil end
      local p = wf.node(plan, n.p)
      r = wf.collect(m.res, p.ch)
      i, n = n.p, p
    else
      -- The last step of a chain: the chain's result is its result.
      i = n.p
      n = wf.node(plan, i)
    end
  end
  return r
end

-- A change of the workflow's record that does not end it.
function wf.update(m, fields)
  redis.call('HSET', m.r, unpack(fields))
  emit(m.r, m.e, m.c, m.cap)
end

-- End the workflow: write its terminal state, free its exclusive key, start the result TTL
-- of its record, log and plan.
function wf.finish(plan, m, now, fields)
  fields[#fields + 1] = 'finished'
  fields[#fields + 1] = now
  fields[#fields + 1] = 'updated'
  fields[#fields + 1] = now
  redis.call('HSET', m.r, unpack(fields))
  local ekey = redis.call('HGET', m.r, 'ekey')
  if ekey and redis.call('GET', m.xp .. ekey) == m.id then redis.call('DEL', m.xp .. ekey) end
  for _, key in ipairs({m.r, m.e, plan, m.res, m.kids, m.live}) do
    redis.call('PEXPIRE', key, m.ttl)
  end
  emit(m.r, m.e, m.c, m.cap)
end

-- The task of `record` (id) has just ended: advance its workflow. Once the workflow has
-- ended (a failure elsewhere, a cancel), a task's end changes nothing.
function wf.advance(record, id, plan)
  local m = wf.meta(plan)
  redis.call('SREM', m.live, id)
  local state = redis.call('HGET', m.r, 'state')
  if not state or is_terminal(state) then return end
  local f = redis.call('HMGET', record, 'state', 'result', 'err_type', 'err_msg', 'wf_node', 'finished')
  local now = tonumber(f[6]) or tonumber(redis.call('TIME')[1]) * 1000
  local i = tonumber(f[5])
  local n = wf.node(plan, i)
  if f[1] == 'SUCCESS' then
    local done = redis.call('HINCRBY', m.res, '#done', 1)
    local progress = '{"done":' .. done .. ',"total":' .. m.n .. '}'
    local r = wf.done(plan, m, i, n, f[2] or 'null', now)
    if r then
      wf.finish(plan, m, now, {'state', 'SUCCESS', 'result', r, 'progress', progress})
    else
      local fields = {'progress', progress, 'updated', now}
      if state == 'PENDING' then
        fields[#fields + 1] = 'state'
        fields[#fields + 1] = 'STARTED'
        fields[#fields + 1] = 'started'
        fields[#fields + 1] = now
      end
      wf.update(m, fields)
    end
    return
  end
  -- FAILURE or REVOKED: the workflow fails with this task's error.
  local etype, emsg = f[3] or 'Error', f[4] or ''
  if n.hc then
    emsg = 'Dependency ' .. id .. ' raised ' .. etype .. ': ' .. emsg
    etype = 'ChordError'
  else
    emsg = emsg .. ' (task ' .. id .. ')'
  end
  wf.finish(plan, m, now, {'state', 'FAILURE', 'err_type', etype, 'err_msg', emsg})
end

-- A task of the workflow has begun an attempt: the workflow is STARTED.
function wf.started(plan, now)
  local m = wf.meta(plan)
  if redis.call('HGET', m.r, 'state') == 'PENDING' then
    redis.call('HSET', m.r, 'state', 'STARTED', 'started', now, 'updated', now)
    emit(m.r, m.e, m.c, m.cap)
  end
end

-- Cancel the workflow itself: REVOKED, so that nothing more is started. (Its tasks still
-- running are cancelled by the caller, one by one, from the set of live tasks.)
function wf.revoke(plan, reason, now)
  wf.finish(plan, wf.meta(plan), now, {'state', 'REVOKED', 'err_type', 'TaskRevokedError', 'err_msg', reason})
end
