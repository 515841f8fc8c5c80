// The taskwire dashboard: the tasks of the last hour, kept live by WatchEvents.
// Plain browser JavaScript, no build step: TaskService is called over the Connect protocol
// with fetch — unary calls are a JSON POST, the server stream is `application/connect+json`
// in 5-byte envelopes (flags, big-endian length) read from the response body.
//
// Order matters as in WatchStatus: the event stream is opened first, and the list is read
// once its response has begun (the server is subscribed by then), so no change falls in
// between. Every record carries a version; an older one never replaces a newer one.

const SERVICE = '/taskwire.v1.TaskService/';
const HOUR = 60 * 60 * 1000;
const FEED_MAX = 60;
const QUIET_MS = 30_000;
const MAX_ROWS = 1000; // a busy queue: the newest this many, not every task of the hour
const TERMINAL = new Set(['SUCCESS', 'FAILURE', 'REVOKED']);
const EXAMPLES = {
  progress: { args: '', kwargs: '{"steps": 20, "interval": 500}' },
  sleep: { args: '', kwargs: '{"seconds": 30}' },
  hello: { args: '["Dashboard"]', kwargs: '' },
  spin: { args: '', kwargs: '{"seconds": 5}' },
  fail: { args: '', kwargs: '{"message": "it broke on purpose"}' },
};

const $ = (selector) => document.querySelector(selector);
const tasks = new Map(); // id -> Task (Connect JSON, state without its prefix)
const rows = new Map(); // id -> <tr>
let queue = new URLSearchParams(location.search).get('queue') || 'default';
let token = sessionStorage.getItem('taskwire.token') || '';
let generation = 0; // bumped when the queue changes: the old stream stops
let truncated = false; // the last hour holds more tasks than the table shows

class RpcError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

function headers(contentType) {
  const h = { 'content-type': contentType, 'connect-protocol-version': '1' };
  if (token) h.authorization = `Bearer ${token}`;
  return h;
}

async function errorOf(res) {
  try {
    const body = await res.json();
    return new RpcError(body.code || 'unknown', body.message || res.statusText);
  } catch {
    return new RpcError('unknown', `HTTP ${res.status} ${res.statusText}`);
  }
}

async function unary(method, request) {
  const res = await fetch(SERVICE + method, {
    method: 'POST',
    headers: headers('application/json'),
    body: JSON.stringify(request),
  });
  if (!res.ok) throw await errorOf(res);
  return res.json();
}

/** A server-streaming call: yields each message; `opened` runs when the response has begun. */
async function* serverStream(method, request, { signal, opened }) {
  const json = new TextEncoder().encode(JSON.stringify(request));
  const frame = new Uint8Array(5 + json.length);
  new DataView(frame.buffer).setUint32(1, json.length);
  frame.set(json, 5);
  const res = await fetch(SERVICE + method, {
    method: 'POST',
    headers: headers('application/connect+json'),
    body: frame,
    signal,
  });
  if (!res.ok) throw await errorOf(res);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = new Uint8Array(0);
  try {
    await opened();
    for (;;) {
      while (buf.length >= 5) {
        const length = new DataView(buf.buffer, buf.byteOffset).getUint32(1);
        if (buf.length < 5 + length) break;
        const flags = buf[0];
        const message = JSON.parse(decoder.decode(buf.subarray(5, 5 + length)));
        buf = buf.slice(5 + length);
        if (flags & 0x02) {
          // end of stream: an error, or a clean end
          if (message.error) throw new RpcError(message.error.code || 'unknown', message.error.message || '');
          return;
        }
        yield message;
      }
      const { done, value } = await reader.read();
      if (done) throw new RpcError('unavailable', 'the stream ended without its end message');
      const next = new Uint8Array(buf.length + value.length);
      next.set(buf);
      next.set(value, buf.length);
      buf = next;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

// ---- the model -------------------------------------------------------------------------

const stateOf = (t) => (t.state || 'TASK_STATE_UNSPECIFIED').replace('TASK_STATE_', '');
const ms = (ts) => (ts ? Date.parse(ts) : undefined);

/** Take a record unless we already hold the same or a newer version of it. */
function apply(task, source) {
  const old = tasks.get(task.id);
  if (old && BigInt(old.version || 0) >= BigInt(task.version || 0)) {
    // Not newer, but it may carry what a change event left out: the live feed can announce
    // a task before the reply of the Start that created it arrives.
    if (old.args === undefined && task.args !== undefined) {
      old.args = task.args;
      old.kwargs = task.kwargs;
      render(old);
    }
    return;
  }
  // Change events leave out args and kwargs (they never change): keep the ones we have.
  if (old && task.args === undefined) task.args = old.args;
  if (old && task.kwargs === undefined) task.kwargs = old.kwargs;
  if (source !== 'list' && (!old || stateOf(old) !== stateOf(task))) {
    feed(task, old ? stateOf(old) : undefined);
  }
  tasks.set(task.id, task);
  render(task);
  // An open workflow shows its tasks as they change, and the tasks it starts.
  if (task.parentId && openWorkflows.has(task.parentId)) showChildrenSoon(task.parentId);
  if (openWorkflows.has(task.id)) showChildrenSoon(task.id);
}

// ---- workflows ---------------------------------------------------------------------------

const CHILDREN_SHOWN = 100;
const openWorkflows = new Set(); // ids of workflows whose tasks are shown under their row
const childrenPending = new Set();
const isWorkflow = (t) => t.name === 'workflow' && !t.parentId;

/** Show (or hide) a workflow's tasks in a row under its own. */
function toggleChildren(id) {
  if (openWorkflows.delete(id)) {
    document.querySelector(`tr.children-of[data-workflow-id="${CSS.escape(id)}"]`)?.remove();
    return;
  }
  openWorkflows.add(id);
  showChildrenSoon(id);
}

function showChildrenSoon(id) {
  if (childrenPending.has(id)) return;
  childrenPending.add(id);
  setTimeout(() => {
    childrenPending.delete(id);
    showChildren(id).catch((err) => refused(err, `tasks of ${shortId(id)}`));
  }, 100);
}

/** The workflow's tasks, in the order they were created (GetStatus), with their states. */
async function showChildren(id) {
  const { task } = await unary('GetStatus', { id });
  const owner = rows.get(id);
  if (!openWorkflows.has(id) || !owner) return;
  const ids = task.children || [];
  const unknown = ids.slice(0, CHILDREN_SHOWN).filter((c) => !tasks.has(c));
  // A task of another queue is not in the table: read it.
  const read = await Promise.all(
    unknown.map((c) =>
      unary('GetStatus', { id: c }).then(
        (r) => r.task,
        () => undefined,
      ),
    ),
  );
  const extra = new Map(read.filter(Boolean).map((t) => [t.id, t]));
  let tr = document.querySelector(`tr.children-of[data-workflow-id="${CSS.escape(id)}"]`);
  if (!tr) {
    tr = document.createElement('tr');
    tr.className = 'children-of';
    tr.dataset.workflowId = id;
    const td = document.createElement('td');
    td.colSpan = 9;
    tr.append(td);
  }
  owner.after(tr);
  const list = document.createElement('ol');
  list.className = 'children';
  for (const c of ids.slice(0, CHILDREN_SHOWN)) {
    const t = tasks.get(c) ?? extra.get(c);
    const li = document.createElement('li');
    li.dataset.taskId = c;
    li.dataset.state = t ? stateOf(t) : '';
    const result = t && t.result !== undefined ? `  → ${JSON.stringify(t.result)}` : '';
    li.textContent = `${shortId(c)}  ${t?.name ?? ''}  ${t ? stateOf(t) : ''}${result}`;
    if (t?.error) li.title = `${t.error.type}: ${t.error.message}`;
    list.append(li);
  }
  const td = tr.firstElementChild;
  td.replaceChildren(list);
  if (ids.length > CHILDREN_SHOWN) {
    const more = document.createElement('p');
    more.textContent = `and ${ids.length - CHILDREN_SHOWN} more`;
    td.append(more);
  } else if (ids.length === 0) {
    td.append('no task started yet');
  }
}

// ---- rendering ---------------------------------------------------------------------------

const shortId = (id) => id.slice(-8);
const clock = (t) => new Date(t).toLocaleTimeString([], { hour12: false });

function duration(t) {
  const started = ms(t.startedAt);
  if (started === undefined) {
    if (stateOf(t) !== 'PENDING') return '';
    const due = ms(t.notBefore);
    return due && due > Date.now() ? `due ${clock(due)}` : 'waiting';
  }
  const span = (ms(t.finishedAt) ?? Date.now()) - started;
  if (span < 10_000) return `${(span / 1000).toFixed(1)}s`;
  const s = Math.round(span / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`;
}

/** A bar for {step, of} / {done, total} / {percent}; compact JSON for anything else. */
function progressCell(cell, p) {
  cell.replaceChildren();
  if (!p || Object.keys(p).length === 0) return;
  const done = p.step ?? p.done ?? p.current;
  const total = p.of ?? p.total;
  let fraction;
  let label;
  if (typeof done === 'number' && typeof total === 'number' && total > 0) {
    fraction = done / total;
    label = `${done}/${total}`;
  } else if (typeof p.percent === 'number') {
    fraction = p.percent / 100;
    label = `${p.percent}%`;
  }
  if (fraction === undefined) {
    cell.textContent = JSON.stringify(p);
    return;
  }
  const bar = document.createElement('span');
  bar.className = 'bar';
  const fill = document.createElement('span');
  fill.style.width = `${Math.max(0, Math.min(1, fraction)) * 100}%`;
  bar.append(fill);
  const text = document.createElement('span');
  text.className = 'progress-label';
  text.textContent = label;
  cell.append(bar, text);
}

function newRow(id) {
  const tr = document.createElement('tr');
  tr.dataset.taskId = id;
  for (const name of ['id', 'name', 'state', 'duration', 'worker', 'progress', 'attempt', 'created', 'actions']) {
    const td = document.createElement('td');
    td.className = name;
    tr.append(td);
  }
  const cancel = document.createElement('button');
  cancel.className = 'cancel';
  cancel.textContent = 'Cancel';
  cancel.title = 'Revoke a waiting task, or ask a running one to stop';
  cancel.addEventListener('click', () => cancelTask(id, false));
  const kill = document.createElement('button');
  kill.className = 'terminate';
  kill.textContent = 'Terminate';
  kill.title = 'Stop a running task by force, even if it ignores its signal';
  kill.addEventListener('click', () => cancelTask(id, true));
  tr.querySelector('.actions').append(cancel, kill);
  tr.querySelector('.name').addEventListener('mouseenter', () => fetchArguments(id));
  const toggle = document.createElement('button');
  toggle.className = 'children-toggle';
  toggle.textContent = 'Tasks';
  toggle.title = "Show or hide the workflow's tasks";
  toggle.hidden = true;
  toggle.addEventListener('click', () => toggleChildren(id));
  tr.childrenToggle = toggle;
  return tr;
}

function render(task) {
  let tr = rows.get(task.id);
  if (!tr) {
    tr = newRow(task.id);
    rows.set(task.id, tr);
    // newest first: before the first row created earlier than this one
    const created = ms(task.createdAt) ?? 0;
    const body = $('#tasks tbody');
    const before = [...body.children].find((r) => r.dataset.taskId && (ms(tasks.get(r.dataset.taskId)?.createdAt) ?? 0) < created);
    body.insertBefore(tr, before ?? null);
  }
  const state = stateOf(task);
  const cell = (name) => tr.querySelector(`.${name}`);
  cell('id').textContent = shortId(task.id);
  cell('id').title = task.id;
  cell('name').textContent = task.parentId ? `↳ ${task.name || ''}` : task.name || '';
  if (task.parentId) tr.dataset.parentId = task.parentId;
  if (isWorkflow(task)) {
    tr.childrenToggle.hidden = false;
    cell('name').append(' ', tr.childrenToggle);
  }
  const args = task.args?.length ? JSON.stringify(task.args) : '';
  const kwargs = task.kwargs && Object.keys(task.kwargs).length ? JSON.stringify(task.kwargs) : '';
  cell('name').title = task.parentId
    ? `a task of workflow ${task.parentId}`
    : task.args === undefined
      ? ''
      : [args, kwargs].filter(Boolean).join(' ') || 'no arguments';
  cell('state').textContent = task.cancelRequested && !TERMINAL.has(state) ? `${state} (cancelling)` : state;
  cell('state').dataset.state = state;
  cell('state').title = task.error
    ? `${task.error.type}: ${task.error.message}`
    : task.result !== undefined
      ? `result: ${JSON.stringify(task.result)}`
      : '';
  cell('duration').textContent = duration(task);
  cell('worker').textContent = task.worker || '';
  progressCell(cell('progress'), task.progress);
  cell('attempt').textContent = task.attempt ? `${task.attempt}/${task.maxAttempts}` : '';
  cell('created').textContent = task.createdAt ? clock(ms(task.createdAt)) : '';
  tr.dataset.state = state;
  for (const b of tr.querySelectorAll('.actions button')) b.disabled = TERMINAL.has(state);
  tr.querySelector('.terminate').hidden = state !== 'STARTED';
  summarySoon();
}

let summaryPending = false;
function summarySoon() {
  if (summaryPending) return;
  summaryPending = true;
  requestAnimationFrame(() => {
    summaryPending = false;
    summary();
  });
}

function summary() {
  const counts = {};
  for (const t of tasks.values()) counts[stateOf(t)] = (counts[stateOf(t)] || 0) + 1;
  $('#counts').replaceChildren(
    ...['PENDING', 'STARTED', 'RETRY', 'SUCCESS', 'FAILURE', 'REVOKED']
      .filter((s) => counts[s])
      .map((s) => {
        const chip = document.createElement('span');
        chip.className = 'chip';
        chip.dataset.state = s;
        chip.textContent = `${s} ${counts[s]}`;
        return chip;
      }),
  );
  $('#task-count').textContent = tasks.size ? `(${truncated ? `newest ${tasks.size}` : tasks.size})` : '';
  $('#empty').hidden = tasks.size > 0;
}

function feed(task, from) {
  const li = document.createElement('li');
  li.dataset.taskId = task.id;
  li.dataset.state = stateOf(task);
  const time = document.createElement('time');
  time.textContent = clock(ms(task.updatedAt) ?? Date.now());
  const what = document.createElement('span');
  what.className = 'what';
  what.textContent = `${shortId(task.id)} ${task.name || ''}`;
  const change = document.createElement('span');
  change.className = 'change';
  change.textContent = from ? `${from} → ${stateOf(task)}` : `→ ${stateOf(task)}`;
  li.append(time, what, change);
  if (task.error && stateOf(task) !== 'SUCCESS') li.title = `${task.error.type}: ${task.error.message}`;
  const list = $('#feed');
  list.prepend(li);
  while (list.children.length > FEED_MAX) list.lastElementChild.remove();
}

function say(text, kind = 'info') {
  const el = $('#message');
  el.textContent = text;
  el.dataset.kind = kind;
}

function setConn(status, label) {
  $('#conn').dataset.status = status;
  $('#conn .label').textContent = label;
}

/** A refused call: say why, and ask for a token when the server wants one. */
function refused(err, what) {
  if (err instanceof RpcError && err.code === 'unauthenticated') $('#token-box').hidden = false;
  say(`${what}: ${err.message || err}`, 'error');
}

// ---- loading and following ---------------------------------------------------------------

async function loadList(gen) {
  const createdAfter = new Date(Date.now() - HOUR).toISOString();
  let pageToken = '';
  let shown = 0;
  do {
    const page = await unary('ListTasks', { queue, pageSize: 500, pageToken, createdAfter });
    if (gen !== generation) return;
    for (const t of page.tasks || []) apply(t, 'list');
    shown += (page.tasks || []).length;
    pageToken = page.nextPageToken || '';
  } while (pageToken && shown < MAX_ROWS);
  truncated = Boolean(pageToken);
  summary();
}

async function follow(gen, signal) {
  for (let failures = 0; gen === generation; ) {
    // The server sends a heartbeat every few seconds; a stream silent for much longer is dead
    // (a proxy or a sleeping laptop dropped it without a word): drop it and open another.
    const conn = new AbortController();
    const stop = () => conn.abort();
    signal.addEventListener('abort', stop, { once: true });
    let silence;
    const heard = () => {
      clearTimeout(silence);
      silence = setTimeout(stop, QUIET_MS);
    };
    try {
      setConn('connecting', 'connecting…');
      heard();
      const stream = serverStream(
        'WatchEvents',
        { queue },
        {
          signal: conn.signal,
          opened: async () => {
            await loadList(gen);
            setConn('live', 'live');
            failures = 0;
          },
        },
      );
      for await (const message of stream) {
        if (gen !== generation) return;
        heard();
        if (message.task) apply(message.task, 'event');
      }
    } catch (err) {
      if (gen !== generation) return;
      if (err instanceof RpcError && err.code === 'unauthenticated') refused(err, 'live feed');
    } finally {
      clearTimeout(silence);
      signal.removeEventListener('abort', stop);
      conn.abort();
    }
    failures++;
    setConn('down', 'reconnecting…');
    await new Promise((r) => setTimeout(r, Math.min(250 * 2 ** failures, 5_000)));
  }
}

let stopFollowing = () => {};
function watchQueue(name) {
  stopFollowing();
  queue = name || 'default';
  const gen = ++generation;
  const ctrl = new AbortController();
  stopFollowing = () => ctrl.abort();
  tasks.clear();
  truncated = false;
  rows.clear();
  $('#tasks tbody').replaceChildren();
  $('#feed').replaceChildren();
  summary();
  void follow(gen, ctrl.signal);
}

// ---- actions -----------------------------------------------------------------------------

function parseJson(text, field, kind) {
  if (!text.trim()) return undefined;
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error(`${field} is not JSON`);
  }
  if (kind === 'list' ? !Array.isArray(value) : value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new Error(`${field} must be a JSON ${kind === 'list' ? 'list' : 'object'}`);
  }
  return value;
}

async function startTask(event) {
  event.preventDefault();
  const name = $('#task-name').value.trim();
  let request;
  try {
    request = {
      name,
      queue,
      args: parseJson($('#task-args').value, 'args', 'list'),
      kwargs: parseJson($('#task-kwargs').value, 'kwargs', 'object'),
    };
  } catch (err) {
    say(err.message, 'error');
    return;
  }
  try {
    const { task } = await unary('Start', request);
    apply(task, 'start');
    say(`started ${name} ${shortId(task.id)}`);
  } catch (err) {
    refused(err, `start ${name}`);
  }
}

async function cancelTask(id, terminate) {
  try {
    const res = await unary('Cancel', { id, terminate, reason: 'cancelled from the dashboard' });
    if (res.task) apply(res.task, 'cancel');
    say(`${shortId(id)}: ${res.message}`);
  } catch (err) {
    refused(err, `cancel ${shortId(id)}`);
  }
}

/** Change events leave out args and kwargs: a task first seen in one gets them on hover. */
async function fetchArguments(id) {
  const known = tasks.get(id);
  if (!known || known.args !== undefined) return;
  try {
    const { task } = await unary('GetStatus', { id });
    const now = tasks.get(id);
    if (!now) return;
    now.args = task.args ?? [];
    now.kwargs = task.kwargs ?? {};
    render(now);
  } catch {
    // a tooltip is not worth an error message
  }
}

function fillExample() {
  const example = EXAMPLES[$('#task-name').value.trim()];
  if (!example) return;
  $('#task-args').value = example.args;
  $('#task-kwargs').value = example.kwargs;
}

function forget(id) {
  if (openWorkflows.delete(id)) document.querySelector(`tr.children-of[data-workflow-id="${CSS.escape(id)}"]`)?.remove();
  tasks.delete(id);
  rows.get(id)?.remove();
  rows.delete(id);
}

// Durations of running tasks tick; tasks older than an hour leave the table, and so do the
// oldest when there are more than MAX_ROWS.
setInterval(() => {
  const cutoff = Date.now() - HOUR;
  if (tasks.size > MAX_ROWS) {
    const oldest = [...tasks.values()].sort((a, b) => (ms(a.createdAt) ?? 0) - (ms(b.createdAt) ?? 0));
    for (const t of oldest.slice(0, tasks.size - MAX_ROWS)) forget(t.id);
    truncated = true;
  }
  for (const [id, t] of tasks) {
    if ((ms(t.createdAt) ?? Date.now()) < cutoff) {
      forget(id);
    } else if (!TERMINAL.has(stateOf(t))) {
      const cell = rows.get(id)?.querySelector('.duration');
      if (cell) cell.textContent = duration(t);
    }
  }
  summary();
}, 1000);

// ---- schedules ---------------------------------------------------------------------------

// Schedules change rarely and no event announces a tick: the list is read every few seconds.
const SCHEDULES_EVERY_MS = 3000;

const whenOf = (s) => (s.every !== undefined ? `every ${s.every}` : `cron ${s.cron} (${s.timezone || 'UTC'})`);
const at = (ts) => (ts ? `${new Date(ts).toLocaleDateString()} ${clock(ms(ts))}` : '—');

function renderSchedules(list) {
  const body = $('#schedules tbody');
  body.replaceChildren(
    ...list.map((s) => {
      const tr = document.createElement('tr');
      tr.dataset.id = s.id;
      const cells = [
        s.id,
        whenOf(s),
        `${s.task?.name ?? ''}@${s.task?.queue ?? ''}`,
        s.overlap === 'OVERLAP_POLICY_ALLOW' ? 'allow' : 'skip',
        s.paused ? 'paused' : at(s.nextRunAt),
        s.lastRunAt ? `${at(s.lastRunAt)} ${shortId(s.lastTaskId || '')}` : 'never',
      ];
      for (const [i, text] of cells.entries()) {
        const td = document.createElement('td');
        td.textContent = text;
        if (i === 4) td.className = s.paused ? 'next paused' : 'next';
        tr.append(td);
      }
      const td = document.createElement('td');
      td.className = 'actions';
      const button = document.createElement('button');
      button.className = s.paused ? 'resume' : 'pause';
      button.textContent = s.paused ? 'Resume' : 'Pause';
      button.addEventListener('click', () => toggleSchedule(s.id, s.paused ? 'ResumeSchedule' : 'PauseSchedule'));
      td.append(button);
      tr.append(td);
      return tr;
    }),
  );
  $('#schedule-count').textContent = list.length ? `(${list.length})` : '';
  $('#no-schedules').hidden = list.length > 0;
}

async function loadSchedules() {
  try {
    const { schedules = [] } = await unary('ListSchedules', {});
    renderSchedules(schedules);
  } catch {
    // the connection indicator already tells when the server is away
  }
}

async function toggleSchedule(id, method) {
  try {
    await unary(method, { id });
    say(`${id}: ${method === 'PauseSchedule' ? 'paused' : 'resumed'}`);
  } catch (err) {
    refused(err, `${method === 'PauseSchedule' ? 'pause' : 'resume'} ${id}`);
  }
  await loadSchedules();
}

setInterval(loadSchedules, SCHEDULES_EVERY_MS);
loadSchedules();

$('#start-form').addEventListener('submit', startTask);
$('#task-name').addEventListener('change', fillExample);
$('#queue').value = queue;
$('#queue').addEventListener('change', () => {
  const url = new URL(location.href);
  url.searchParams.set('queue', $('#queue').value.trim() || 'default');
  history.replaceState(null, '', url);
  watchQueue($('#queue').value.trim());
});
$('#token').value = token;
$('#token').addEventListener('change', () => {
  token = $('#token').value.trim();
  sessionStorage.setItem('taskwire.token', token);
  watchQueue(queue);
});
fillExample();
watchQueue(queue);
