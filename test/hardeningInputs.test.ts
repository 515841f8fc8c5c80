/**
 * Bad inputs a user can send, each refused with INVALID_ARGUMENT and a message naming the
 * field, before anything is written: unknown JSON fields, negative or far-off durations,
 * and page tokens that no listing wrote.
 */
import http from 'node:http';
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TaskState } from '../src/client/index.js';
import { fail, hello, sleepTask } from '../src/tasks/examples.js';
import type { TaskwireProcess } from './helpers/processes.js';
import { startStack, type Stack } from './helpers/stack.js';
import { refused } from './helpers/refused.js';

let stack: Stack;
beforeAll(async () => {
  // No worker: a task that was wrongly accepted stays in its queue's listing.
  stack = await startStack({ workers: 0 });
});
afterAll(async () => {
  await stack?.stop();
});

/** The queue every refused Start names, so a Start that slipped through shows in its listing. */
const REFUSED = 'refused';

function call(method: string, message: unknown): Promise<{ status: number; json: any }> {
  const body = JSON.stringify(message);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: stack.api.port,
        path: `/taskwire.v1.TaskService/${method}`,
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(Buffer.concat(chunks).toString('utf8')) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('Connect JSON', () => {
  it('refuses an unknown field in a Start, naming it, instead of dropping it', async () => {
    const res = await call('Start', { name: 'hello', queue: REFUSED, countDown: '60s' });
    expect(res.status).toBe(400);
    expect(res.json.code).toBe('invalid_argument');
    expect(res.json.message).toContain('countDown');

    const nested = await call('Start', { name: 'hello', queue: REFUSED, retry: { maxAttempt: 3 } });
    expect(nested.status).toBe(400);
    expect(nested.json.code).toBe('invalid_argument');
    expect(nested.json.message).toContain('maxAttempt');
  });

  it('still accepts the fields spelt as the proto names them, and any keys in kwargs', async () => {
    const res = await call('Start', { name: 'hello', queue: 'accepted', countdown: '60s', kwargs: { anyKey: 1 } });
    expect(res.status).toBe(200);
    expect(Date.parse(res.json.task.notBefore)).toBeGreaterThan(Date.now() + 30_000);
  });
});

describe('durations', () => {
  it.each([
    [{ retry: { initialBackoff: '-5s' } }, 'retry.initial_backoff: must not be negative'],
    [{ retry: { maxBackoff: '-1s' } }, 'retry.max_backoff: must not be negative'],
    [{ retry: { maxBackoff: '40000000s' } }, 'retry.max_backoff: must be at most 365 days (31536000s)'],
    [{ countdown: `${300 * 365 * 86400}s` }, 'countdown: must be at most 365 days (31536000s)'],
    [{ notBefore: '2300-01-01T00:00:00Z' }, 'not_before: must be at most 365 days (31536000s) ahead'],
    [{ timeLimit: '3000000s' }, 'time_limit: must be at most 24 days (2073600s)'],
  ])('refuses %j with INVALID_ARGUMENT naming the field and its limit', async (options, message) => {
    const res = await call('Start', { name: 'hello', queue: REFUSED, ...options });
    expect(res.status).toBe(400);
    expect(res.json.code).toBe('invalid_argument');
    expect(res.json.message).toBe(message);
  });

  it('refuses them over gRPC too', async () => {
    const backoff = await refused(stack.client.start(hello, { queue: REFUSED, initialBackoffMs: -1000 }));
    expect(backoff.code).toBe(Code.InvalidArgument);
    expect(backoff.rawMessage).toBe('retry.initial_backoff: must not be negative');
    const countdown = await refused(stack.client.start(hello, { queue: REFUSED, countdownMs: 300 * 365 * 86_400_000 }));
    expect(countdown.code).toBe(Code.InvalidArgument);
    expect(countdown.rawMessage).toBe('countdown: must be at most 365 days (31536000s)');
  });
});

describe('ListTasks page_token', () => {
  it.each(['garbage!', '!!!!', 'MQ==x', 'LTE', 'MS41'])('refuses %j instead of reading it as the first page', async (token) => {
    const res = await call('ListTasks', { queue: 'default', pageToken: token });
    expect(res.status).toBe(400);
    expect(res.json.code).toBe('invalid_argument');
    expect(res.json.message).toMatch(/^page_token: is not a token from a previous response/);
  });

  it('follows the tokens it writes to the end', async () => {
    for (let i = 0; i < 3; i++) expect((await call('Start', { name: 'hello', queue: 'paged' })).status).toBe(200);
    const first = await call('ListTasks', { queue: 'paged', pageSize: 2 });
    expect(first.json.tasks).toHaveLength(2);
    const second = await call('ListTasks', { queue: 'paged', pageSize: 2, pageToken: first.json.nextPageToken });
    expect(second.status).toBe(200);
    expect(second.json.tasks).toHaveLength(1);
  });
});

describe('nothing refused was written', () => {
  it('the queue every refused Start named is empty', async () => {
    const res = await call('ListTasks', { queue: REFUSED });
    expect(res.status).toBe(200);
    expect(res.json.tasks ?? []).toEqual([]);
  });
});

describe('worker log lines at the end of an attempt', () => {
  let worker: TaskwireProcess;
  beforeAll(async () => {
    worker = await stack.startWorker({ env: { TASKWIRE_LOG: 'debug', TASKWIRE_LOG_FORMAT: 'json' } });
  });
  afterAll(async () => {
    await worker?.stop();
  });

  /** The worker's line that ends an attempt of `id` (waits for it). */
  async function endLine(id: string): Promise<Record<string, unknown>> {
    const pattern = new RegExp(
      `^\\{[^\\n]*"task_id":"${id}"[^\\n]*"msg":"task (failure|revoked|retry|success) in|^\\{[^\\n]*"msg":"task (failure|revoked|retry|success) in[^\\n]*"task_id":"${id}"`,
      'm',
    );
    await worker.waitFor(pattern);
    const line = worker
      .output()
      .split('\n')
      .find((l) => l.includes(`"task_id":"${id}"`) && /"msg":"task (failure|revoked|retry|success) in/.test(l));
    return JSON.parse(line!);
  }

  it('a failure carries the error message as well as its type, and its stack at debug', async () => {
    const task = await stack.client.start(fail, { args: ['disk full on /data'], maxAttempts: 1 });
    await stack.client.wait(task.id).catch(() => undefined);
    const line = await endLine(task.id);
    expect(line).toMatchObject({ state: 'FAILURE', error_type: 'Error', error_message: 'disk full on /data' });
    await worker.waitFor(new RegExp(`"task_id":"${task.id}"[^\\n]*"traceback":"Error: disk full on /data`));
  });

  it('a task cancelled while it runs logs TaskRevokedError, as its record says', async () => {
    const task = await stack.client.start(sleepTask, { args: [30] });
    for await (const t of stack.client.watch(task.id)) if (t.state === TaskState.STARTED) break;
    await stack.client.cancel(task.id);
    let record = await stack.client.status(task.id);
    for await (const t of stack.client.watch(task.id)) record = t;
    expect(record.state).toBe(TaskState.REVOKED);
    expect(record.error?.type).toBe('TaskRevokedError');
    const line = await endLine(task.id);
    expect(line).toMatchObject({ state: 'REVOKED', error_type: 'TaskRevokedError' });
  });
});
