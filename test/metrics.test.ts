/**
 * Observing taskwire: GET /metrics on the API port after a handful of tasks, and the JSON
 * log lines of the API and the worker joined by the W3C trace context of the Start call.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TaskState } from '../src/client/index.js';
import { fail, hello, sleepTask } from '../src/tasks/examples.js';
import { startStack, type Stack } from './helpers/stack.js';

let stack: Stack;
beforeAll(async () => {
  // No worker at first, so the queue depth can be seen before anything runs.
  stack = await startStack({ workers: 0, env: { TASKWIRE_LEASE: '2s', TASKWIRE_LOG: 'debug' } });
});
afterAll(async () => {
  await stack?.stop();
});

async function scrape(): Promise<Map<string, number>> {
  const res = await fetch(`${stack.baseUrl}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/plain');
  const samples = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const cut = line.lastIndexOf(' ');
    samples.set(line.slice(0, cut), Number(line.slice(cut + 1)));
  }
  return samples;
}

/** Scrapes until `check` holds (a stream that ended is let go by the server a moment after
 * its client saw the last message). */
async function scrapeUntil(check: (m: Map<string, number>) => boolean): Promise<Map<string, number>> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const m = await scrape();
    if (check(m) || Date.now() > deadline) return m;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('GET /metrics', () => {
  it('counts tasks by name and outcome, and shows queue depth, in-flight, histograms and watchers', async () => {
    const c = stack.client;
    const greetings = await Promise.all(['a', 'b', 'c'].map((n) => c.start(hello, { args: [n] })));
    const failing = await c.start(fail, { args: ['no'] });
    const later = await c.start(hello, { countdownMs: 3_600_000 });

    let m = await scrape();
    expect(m.get('taskwire_tasks_started_total{task="hello",queue="default"}')).toBe(4);
    expect(m.get('taskwire_tasks_started_total{task="fail",queue="default"}')).toBe(1);
    expect(m.get('taskwire_queue_depth{queue="default"}')).toBe(4);
    expect(m.get('taskwire_queue_scheduled{queue="default"}')).toBe(1);
    expect(m.get('taskwire_tasks_in_flight{queue="default"}')).toBe(0);

    stack.workers.push(await stack.startWorker());
    for (const t of greetings) expect(await c.wait(t)).toMatch(/^Hello [abc]!$/);
    await expect(c.wait(failing)).rejects.toThrow(/no/);
    const long = await c.start(sleepTask, { args: [60] });
    await stack.workers[0]!.waitFor(new RegExp(`"task_id":"${long.id}"[^\\n]*"msg":"task started"`));

    // One watcher open while scraping.
    const ctl = new AbortController();
    const watching = c.watch(later.id, { signal: ctl.signal });
    expect((await watching.next()).value?.state).toBe(TaskState.PENDING);

    m = await scrapeUntil((s) => s.get('taskwire_watchers') === 1);
    expect(m.get('taskwire_queue_depth{queue="default"}')).toBe(0);
    expect(m.get('taskwire_tasks_in_flight{queue="default"}')).toBe(1);
    expect(m.get('taskwire_watchers')).toBe(1);
    expect(m.get('taskwire_streams_open')).toBe(1);
    ctl.abort();
    await watching.return(undefined);

    await c.cancel(long.id, { terminate: true });
    await c.cancel(later.id);
    await expect(c.wait(long)).rejects.toThrow(/REVOKED/);
    await expect(c.wait(later)).rejects.toThrow(/REVOKED/);

    m = await scrapeUntil((s) => s.get('taskwire_watchers') === 0);
    expect(m.get('taskwire_tasks_started_total{task="hello",queue="default"}')).toBe(4);
    expect(m.get('taskwire_tasks_started_total{task="sleep",queue="default"}')).toBe(1);
    expect(m.get('taskwire_tasks_succeeded_total{task="hello",queue="default"}')).toBe(3);
    expect(m.get('taskwire_tasks_failed_total{task="fail",queue="default"}')).toBe(1);
    expect(m.get('taskwire_tasks_revoked_total{task="hello",queue="default"}')).toBe(1);
    expect(m.get('taskwire_tasks_revoked_total{task="sleep",queue="default"}')).toBe(1);
    expect(m.get('taskwire_task_run_seconds_count{task="hello",queue="default",state="SUCCESS"}')).toBe(3);
    expect(m.get('taskwire_task_run_seconds_count{task="fail",queue="default",state="FAILURE"}')).toBe(1);
    expect(m.get('taskwire_task_run_seconds_count{task="sleep",queue="default",state="REVOKED"}')).toBe(1);
    // The three greetings and the failing task waited in the queue until the worker came.
    expect(m.get('taskwire_task_queue_wait_seconds_count{task="hello",queue="default"}')).toBe(3);
    expect(m.get('taskwire_task_queue_wait_seconds_count{task="fail",queue="default"}')).toBe(1);
    expect(m.get('taskwire_task_queue_wait_seconds_sum{task="hello",queue="default"}')).toBeGreaterThan(0);
    expect(m.get('taskwire_queue_scheduled{queue="default"}')).toBe(0);
    expect(m.get('taskwire_tasks_in_flight{queue="default"}')).toBe(0);
    expect(m.get('taskwire_watchers')).toBe(0);
    expect(m.has('process_cpu_seconds_total')).toBe(true);

    // Counted in Redis, not heard by this server: a server started afterwards reports the same.
    const late = await stack.startApi();
    const res = await fetch(`http://127.0.0.1:${late.port}/metrics`);
    const text = await res.text();
    for (const line of [
      'taskwire_tasks_succeeded_total{task="hello",queue="default"} 3',
      'taskwire_tasks_revoked_total{task="sleep",queue="default"} 1',
      'taskwire_task_run_seconds_count{task="fail",queue="default",state="FAILURE"} 1',
      'taskwire_task_queue_wait_seconds_count{task="hello",queue="default"} 3',
    ]) {
      expect(text.split('\n')).toContain(line);
    }
  });
});

describe('logs and trace context', () => {
  const lines = (out: string) =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);

  it("carries the Start call's traceparent into the API's and the worker's log lines for the task", async () => {
    const traceId = randomBytes(16).toString('hex');
    const callerSpan = randomBytes(8).toString('hex');
    const task = await stack.client.start(hello, { args: ['trace'], traceparent: `00-${traceId}-${callerSpan}-01` });
    expect(await stack.client.wait(task)).toBe('Hello trace!');
    const worker = stack.workers[0]!;
    await worker.waitFor(new RegExp(`"task_id":"${task.id}"[^\\n]*"msg":"task success`));

    const api = lines(stack.api.output()).find((l) => l.task_id === task.id && l.msg === 'task queued');
    expect(api).toMatchObject({ level: 'debug', role: 'api', task: 'hello', trace_id: traceId, parent_span_id: callerSpan });
    const ran = lines(worker.output()).find((l) => l.task_id === task.id && String(l.msg).startsWith('task success'));
    expect(ran).toMatchObject({ level: 'info', role: 'worker', task: 'hello', attempt: 1, state: 'SUCCESS', trace_id: traceId });
    // The worker's span is a child of the API's, which is a child of the caller's: one trace.
    expect(ran!.parent_span_id).toBe(api!.span_id);
    expect(ran!.span_id).not.toBe(api!.span_id);
  });

  it('starts a trace when the caller sends none, and the worker joins it', async () => {
    const task = await stack.client.start(hello, { args: ['untraced'] });
    await stack.client.wait(task);
    const worker = stack.workers[0]!;
    await worker.waitFor(new RegExp(`"task_id":"${task.id}"[^\\n]*"msg":"task success`));
    const api = lines(stack.api.output()).find((l) => l.task_id === task.id && l.msg === 'task queued');
    const ran = lines(worker.output()).find((l) => l.task_id === task.id && String(l.msg).startsWith('task success'));
    expect(api?.trace_id).toMatch(/^[0-9a-f]{32}$/);
    expect(api?.parent_span_id).toBeUndefined();
    expect(ran?.trace_id).toBe(api?.trace_id);
  });
});
