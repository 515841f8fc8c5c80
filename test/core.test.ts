/**
 * The core, as a user of the project's own client sees it: each example task's behaviour,
 * the task record GetStatus returns, a task started while no worker runs, and the errors a
 * refused call gets (with nothing written to Redis for a refused Start).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { timestampMs } from '@bufbuild/protobuf/wkt';
import { argsOf, Code, ConnectError, resultOf, TaskState, TaskwireClient, type Task } from '../src/client/index.js';
import { createTaskwireClient } from '../src/client/index.js';
import { redisClient } from './helpers/redis.js';
import { startStack, type Stack } from './helpers/stack.js';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.stop();
});

async function collect(id: string, client: TaskwireClient = stack.client, afterVersion?: number): Promise<Task[]> {
  const seen: Task[] = [];
  for await (const t of client.watch(id, { afterVersion })) seen.push(t);
  return seen;
}

/** Every version of a task from its creation: the watch resumed from version 0. */
const history = (id: string, client?: TaskwireClient) => collect(id, client, 0);

/** Struct fields (kwargs, progress) arrive as plain JSON objects. */
const json = (s: Task['progress' | 'kwargs']) => s;

async function rpcError(call: Promise<unknown> | (() => Promise<unknown>)): Promise<ConnectError> {
  try {
    await (typeof call === 'function' ? call() : call);
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error('the call succeeded; an error was expected');
}

describe('start and watch', () => {
  it('runs hello through PENDING → STARTED → SUCCESS', async () => {
    const task = await stack.client.start('hello', { args: ['Lucy'] });
    expect(task.state).toBe(TaskState.PENDING);
    const seen = await collect(task.id);
    expect(seen.at(-1)?.state).toBe(TaskState.SUCCESS);
    expect(resultOf(seen.at(-1)!)).toBe('Hello Lucy!');
  });
});

describe('example tasks', () => {
  it('hello greets Bob when no name is given', async () => {
    const task = await stack.client.start('hello');
    expect(await stack.client.wait(task.id)).toBe('Hello Bob!');
  });

  it('hello takes name and seconds as keyword arguments', async () => {
    const task = await stack.client.start('hello', { kwargs: { name: 'Ann', seconds: 0.3 } });
    expect(json(task.kwargs)).toEqual({ name: 'Ann', seconds: 0.3 });
    const seen = await history(task.id);
    const last = seen.at(-1)!;
    expect(seen.map((t) => t.state)).toEqual([TaskState.PENDING, TaskState.STARTED, TaskState.SUCCESS]);
    expect(resultOf(last)).toBe('Hello Ann!');
    // A lower bound only (the handler cannot finish before its sleep): it honoured `seconds`.
    expect(timestampMs(last.finishedAt!) - timestampMs(last.startedAt!)).toBeGreaterThanOrEqual(300);
  });

  it('sleep returns how long it slept', async () => {
    const task = await stack.client.start('sleep', { args: [0.2] });
    expect(await stack.client.wait(task.id)).toEqual({ slept: 0.2 });
  });

  it('fail ends in FAILURE with the error type and message', async () => {
    const plain = await stack.client.start('fail', { args: ['it broke'] });
    const typed = await stack.client.start('fail', { kwargs: { message: 'bad value', type: 'ValueError' } });
    const [p, t] = await Promise.all([collect(plain.id), collect(typed.id)]);
    expect(p.at(-1)!.state).toBe(TaskState.FAILURE);
    expect(p.at(-1)!.error).toMatchObject({ type: 'Error', message: 'it broke' });
    expect(p.at(-1)!.result).toBeUndefined();
    expect(t.at(-1)!.state).toBe(TaskState.FAILURE);
    expect(t.at(-1)!.error).toMatchObject({ type: 'ValueError', message: 'bad value' });
    // fail allows one attempt: no RETRY on the way.
    expect(p.map((x) => x.state)).not.toContain(TaskState.RETRY);
    expect(p.at(-1)!.attempt).toBe(1);
  });

  it('unserializable ends in FAILURE with an EncodeError naming the cause', async () => {
    const task = await stack.client.start('unserializable');
    const last = (await collect(task.id)).at(-1)!;
    expect(last.state).toBe(TaskState.FAILURE);
    expect(last.error?.type).toBe('EncodeError');
    expect(last.error?.message).toMatch(/FileHandle/);
    expect(last.error?.message).toMatch(/not JSON serializable/);
    expect(last.result).toBeUndefined();
  });

  it('progress reports every step, in order, in the watch', async () => {
    const task = await stack.client.start('progress', { args: [5], kwargs: { interval: 20 } });
    const seen = await history(task.id);
    const versions = seen.map((t) => Number(t.version));
    expect(versions).toEqual(versions.map((_, i) => i + 1));
    const steps = seen.filter((t) => t.state === TaskState.STARTED && t.progress).map((t) => json(t.progress));
    expect(steps).toEqual([1, 2, 3, 4, 5].map((step) => ({ step, of: 5 })));
    // Progress changes the record without changing its state.
    expect(seen.map((t) => t.state)).toEqual([TaskState.PENDING, ...Array<TaskState>(6).fill(TaskState.STARTED), TaskState.SUCCESS]);
    expect(resultOf(seen.at(-1)!)).toEqual({ steps: 5 });
    expect(json(seen.at(-1)!.progress)).toEqual({ step: 5, of: 5 });
  });
});

describe('GetStatus', () => {
  it('returns the whole record of a finished task', async () => {
    const started = await stack.client.start('hello', { args: ['Lucy'], kwargs: { seconds: 0 } });
    await stack.client.wait(started.id);
    const t = await stack.client.status(started.id);
    expect(t.id).toBe(started.id);
    expect(t.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(t.name).toBe('hello');
    expect(t.queue).toBe('default');
    expect(t.state).toBe(TaskState.SUCCESS);
    expect(argsOf(t)).toEqual(['Lucy']);
    expect(json(t.kwargs)).toEqual({ seconds: 0 });
    expect(resultOf(t)).toBe('Hello Lucy!');
    expect(t.error).toBeUndefined();
    expect(t.attempt).toBe(1);
    expect(t.maxAttempts).toBe(3);
    expect(t.version).toBe(3n);
    // The worker's name carries its pid: this is the worker the stack started.
    expect(t.worker).toContain(`-${stack.workers[0]!.pid}-`);
    const created = timestampMs(t.createdAt!);
    const startedAt = timestampMs(t.startedAt!);
    const finished = timestampMs(t.finishedAt!);
    expect(created).toBeLessThanOrEqual(startedAt);
    expect(startedAt).toBeLessThanOrEqual(finished);
    expect(timestampMs(t.updatedAt!)).toBe(finished);
    expect(t.notBefore).toBeUndefined();
    expect(t.cancelRequested).toBe(false);
  });

  it('keeps args, kwargs and the result exactly, whatever characters they hold', async () => {
    // Text a JSON or Lua layer could mangle: quotes and backslashes, escapes written out,
    // control characters, NUL, non-ASCII, a character outside the BMP, JSON-looking text.
    const awkward = 'q"uote\\back\\nslash \\u00e9 \n\t\u0001\u0000 é 日本 😀 {"a":[1,null]} \u2028';
    const kwargs = { [`k${awkward}`]: awkward, n: 12345678901234, big: '9007199254740993' };
    const one = await stack.client.start('hello', { args: [awkward], kwargs: { ...kwargs, seconds: 0 } });
    const [many] = await stack.client.rpc
      .startMany({
        requests: [TaskwireClient.startRequest('hello', { args: [awkward], kwargs: { ...kwargs, seconds: 0 } })],
      })
      .then((r) => r.results.map((x) => (x.outcome.case === 'task' ? x.outcome.value : undefined)));
    for (const started of [one, many!]) {
      expect(await stack.client.wait(started.id)).toBe(`Hello ${awkward}!`);
      const t = await stack.client.status(started.id);
      expect(argsOf(t)).toEqual([awkward]);
      expect(json(t.kwargs)).toEqual({ ...kwargs, seconds: 0 });
    }
  });

  it('returns the progress and error of a task that has them', async () => {
    const p = await stack.client.start('progress', { args: [2], kwargs: { interval: 10 } });
    const f = await stack.client.start('fail', { args: ['nope'] });
    await Promise.all([collect(p.id), collect(f.id)]);
    expect(json((await stack.client.status(p.id)).progress)).toEqual({ step: 2, of: 2 });
    const failed = await stack.client.status(f.id);
    expect(failed.state).toBe(TaskState.FAILURE);
    expect(failed.error).toMatchObject({ type: 'Error', message: 'nope' });
    expect(failed.error?.traceback).toMatch(/nope/);
    expect(failed.finishedAt).toBeDefined();
  });

  it('without an id answers for the latest task started', async () => {
    const task = await stack.client.start('hello', { args: ['Latest'] });
    expect((await stack.client.status()).id).toBe(task.id);
  });
});

describe('errors', () => {
  it('refuses an unknown task name with INVALID_ARGUMENT and the known names', async () => {
    const err = await rpcError(stack.client.start('nope'));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toContain('"nope"');
    for (const name of ['fail', 'hello', 'progress', 'sleep', 'spin', 'unserializable']) {
      expect(err.rawMessage).toContain(name);
    }
    const odd = await rpcError(stack.client.start('nöpe, 100%: ok?'));
    expect(odd.rawMessage).toMatch(/^name: no task is registered as "nöpe, 100%: ok\?"; known tasks: add, fail, hello/);
  });

  it('refuses a malformed id with INVALID_ARGUMENT and an unknown id with NOT_FOUND', async () => {
    for (const call of [() => stack.client.status('not-an-id'), () => stack.client.cancel('not-an-id'), () => collect('not-an-id')]) {
      const err = await rpcError(call);
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toMatch(/is not a task id/);
    }
    const unknown = '01890000-0000-7000-8000-000000000000';
    for (const call of [() => stack.client.status(unknown), () => stack.client.cancel(unknown), () => collect(unknown)]) {
      const err = await rpcError(call);
      expect(err.code).toBe(Code.NotFound);
      expect(err.rawMessage).toContain(unknown);
    }
  });

  it('writes nothing to Redis for a refused Start', async () => {
    const small = await stack.startApi({ env: { TASKWIRE_MAX_PAYLOAD: '100' } });
    const client = createTaskwireClient({ baseUrl: `http://127.0.0.1:${small.port}` });
    const redis = redisClient(stack.redis.url);
    try {
      const before = (await redis.keys('*')).sort();
      const streamBefore = await redis.xlen('taskwire:{default}:stream');
      const latestBefore = await redis.get('taskwire:{default}:latest');

      const refusals: [() => Promise<unknown>, Code][] = [
        [() => client.start('nope'), Code.InvalidArgument],
        [() => client.start('hello', { args: ['x'.repeat(200)] }), Code.ResourceExhausted],
        [() => client.start('hello', { kwargs: { name: 'y'.repeat(200) } }), Code.ResourceExhausted],
        [() => client.start('hello', { queue: 'no spaces allowed' }), Code.InvalidArgument],
        [() => client.start('hello', { expiresAt: new Date(Date.now() - 60_000) }), Code.InvalidArgument],
        [() => client.start('hello', { countdownMs: 1000, notBefore: new Date(Date.now() + 1000) }), Code.InvalidArgument],
      ];
      for (const [call, code] of refusals) {
        const err = await rpcError(call);
        expect(err.code, err.message).toBe(code);
      }
      // Through curl-style Connect JSON: args that are not a list, kwargs that are not an object.
      for (const body of [
        { name: 'hello', args: { name: 'Lucy' } },
        { name: 'hello', kwargs: ['Lucy'] },
        { name: 'hello', args: 'Lucy' },
      ]) {
        const res = await fetch(`http://127.0.0.1:${small.port}/taskwire.v1.TaskService/Start`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        expect(res.status).toBe(400);
        expect(((await res.json()) as { code: string }).code).toBe('invalid_argument');
      }
      const big = await rpcError(client.start('hello', { args: ['x'.repeat(200)] }));
      expect(big.rawMessage).toMatch(/limit is 100/);

      expect((await redis.keys('*')).sort()).toEqual(before);
      expect(await redis.xlen('taskwire:{default}:stream')).toBe(streamBefore);
      expect(await redis.get('taskwire:{default}:latest')).toBe(latestBefore);

      // The same server still accepts a Start within the limit.
      const ok = await client.start('hello', { args: ['Zed'] });
      expect(await client.wait(ok.id)).toBe('Hello Zed!');
    } finally {
      redis.disconnect();
      await small.stop();
    }
  });
});

describe('with no worker running', () => {
  let idle: Stack;
  beforeAll(async () => {
    idle = await startStack({ workers: 0 });
  });
  afterAll(async () => {
    await idle?.stop();
  });

  it('a task stays PENDING and runs when a worker starts', async () => {
    const task = await idle.client.start('hello', { args: ['Later'] });
    expect(task.state).toBe(TaskState.PENDING);
    // Its message waits in the queue stream, read by no consumer.
    const redis = redisClient(idle.redis.url);
    try {
      expect(await redis.xlen('taskwire:{default}:stream')).toBe(1);
    } finally {
      redis.disconnect();
    }
    const status = await idle.client.status(task.id);
    expect(status.state).toBe(TaskState.PENDING);
    expect(status.version).toBe(1n);
    expect(status.worker).toBe('');

    const worker = await idle.startWorker();
    const seen = await history(task.id, idle.client);
    // Nothing happened to it before the worker came: its history is exactly the run.
    expect(seen.map((t) => [Number(t.version), t.state])).toEqual([
      [1, TaskState.PENDING],
      [2, TaskState.STARTED],
      [3, TaskState.SUCCESS],
    ]);
    expect(resultOf(seen.at(-1)!)).toBe('Hello Later!');
    expect(seen.at(-1)!.worker).toContain(`-${worker.pid}-`);
  });
});
