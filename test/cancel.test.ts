/**
 * Cancel (issue 3, the seed's `revoke(terminate=True, signal="SIGKILL")`): terminate stops
 * a task that never looks at its signal without disturbing the worker's other tasks, and
 * the worker keeps its concurrency; without terminate a cooperative task stops by itself
 * and a non-cooperative one runs on, marked, and still ends REVOKED; a waiting task is
 * revoked at once and never runs; a finished one is left as it was; and a cancel reaches
 * the worker that holds the task whichever API server receives it.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CancelOutcome, createTaskwireClient, resultOf, TaskState, TERMINAL, type Task, type TaskwireClient } from '../src/client/index.js';
import { CONSUMER_GROUP, keys } from '../src/store/keys.js';
import { redisClient } from './helpers/redis.js';
import { startStack, type Stack } from './helpers/stack.js';

let stack: Stack;
let tw: TaskwireClient;
let redis: Redis;

beforeAll(async () => {
  stack = await startStack({ env: { TASKWIRE_LEASE: '2s' }, workerArgs: ['--concurrency', '3'] });
  tw = stack.client;
  redis = redisClient(stack.redis.url);
});
afterAll(async () => {
  redis?.disconnect();
  await stack?.stop();
});

/** Every record the watch sent, up to and including the first that satisfies `until`. */
async function watchUntil(id: string, until: (t: Task) => boolean, client = tw, afterVersion?: bigint): Promise<Task[]> {
  const seen: Task[] = [];
  for await (const t of client.watch(id, { afterVersion })) {
    seen.push(t);
    if (until(t)) return seen;
  }
  throw new Error(`the watch of ${id} ended at ${TaskState[seen.at(-1)?.state ?? 0]} without reaching the expected state`);
}
const started = async (id: string, client = tw) => (await watchUntil(id, (t) => t.state === TaskState.STARTED, client)).at(-1)!;
const final = async (id: string, client = tw) => (await watchUntil(id, (t) => TERMINAL.has(t.state), client)).at(-1)!;

describe('cancel with terminate', () => {
  it('stops a busy loop (spin) at once, REVOKED with the reason, without disturbing the tasks beside it', async () => {
    const sleeper = await tw.start('sleep', { args: [2] });
    const greeter = await tw.start('hello', { args: ['Lucy', 2] });
    const spinner = await tw.start('spin', { args: [30] });
    const running = await Promise.all([sleeper, greeter, spinner].map((t) => started(t.id)));
    // All three share the one worker (three slots).
    expect(new Set(running.map((t) => t.worker)).size).toBe(1);

    const res = await tw.cancel(spinner.id, { terminate: true, reason: 'the user pressed stop' });
    expect(res.outcome).toBe(CancelOutcome.REQUESTED);
    expect(res.message).toMatch(/running/);
    expect(res.task?.cancelRequested).toBe(true);

    // The test's timeout (20s) is well below the 30s the spin would take by itself.
    const end = await final(spinner.id);
    expect(end.state).toBe(TaskState.REVOKED);
    expect(end.error?.type).toBe('TaskRevokedError');
    expect(end.error?.message).toContain('the user pressed stop');
    expect(end.error?.message).toContain('terminated by force');
    expect(end.result).toBeUndefined();

    for (const [t, result] of [
      [sleeper, { slept: 2 }],
      [greeter, 'Hello Lucy!'],
    ] as const) {
      const done = await final(t.id);
      expect(done.state).toBe(TaskState.SUCCESS);
      expect(resultOf(done)).toEqual(result);
      expect(done.attempt).toBe(1); // ran once, undisturbed: not killed and run again
    }
  }, 20_000);

  it('leaves the worker with all its slots: three long tasks run at once after it, and it keeps taking work', async () => {
    const worker = stack.workers[0]!;
    await worker.waitFor('terminating on request'); // the kill of the test above did happen
    // Three 30s sleeps can only all be STARTED together if the killed slot was replaced.
    const long = await Promise.all([1, 2, 3].map(() => tw.start('sleep', { args: [30] })));
    await Promise.all(long.map((t) => started(t.id)));
    await Promise.all(long.map((t) => tw.cancel(t.id)));
    for (const t of long) expect((await final(t.id)).state).toBe(TaskState.REVOKED);

    const more = await Promise.all(['a', 'b', 'c'].map((n) => tw.start('hello', { args: [n] })));
    for (const [i, t] of more.entries()) {
      const done = await final(t.id);
      expect(done.state).toBe(TaskState.SUCCESS);
      expect(resultOf(done)).toBe(`Hello ${['a', 'b', 'c'][i]}!`);
    }
  }, 20_000);
});

describe('cancel without terminate', () => {
  it('fires the AbortSignal: a cooperative task (sleep) stops by itself and ends REVOKED', async () => {
    const task = await tw.start('sleep', { args: [30] });
    const before = await started(task.id);
    expect(before.cancelRequested).toBe(false);
    const res = await tw.cancel(task.id, { reason: 'no longer needed' });
    expect(res.outcome).toBe(CancelOutcome.REQUESTED);
    // Every change since it started, in order.
    const seen = await watchUntil(task.id, (t) => TERMINAL.has(t.state), tw, before.version);
    const end = seen.at(-1)!;
    expect(end.state).toBe(TaskState.REVOKED);
    expect(end.error?.type).toBe('TaskRevokedError');
    expect(end.error?.message).toBe('no longer needed');
    // The request was written to the record while it ran (STARTED, cancel_requested), then
    // the handler stopped.
    expect(seen.map((t) => [TaskState[t.state], t.cancelRequested])).toEqual([
      ['STARTED', true],
      ['REVOKED', true],
    ]);
  }, 20_000);

  it('lets a task that ignores its signal (spin) run on, marked as cancel requested, then ends it REVOKED', async () => {
    const task = await tw.start('spin', { args: [3] });
    await started(task.id);
    const res = await tw.cancel(task.id, { reason: 'please stop' });
    expect(res.outcome).toBe(CancelOutcome.REQUESTED);
    const now = await tw.status(task.id);
    expect(now.state).toBe(TaskState.STARTED);
    expect(now.cancelRequested).toBe(true);

    const end = await final(task.id);
    // REVOKED wins over the result the handler returned after the request.
    expect(end.state).toBe(TaskState.REVOKED);
    expect(end.error?.message).toBe('please stop');
    expect(end.error?.message).not.toContain('terminated');
    expect(end.result).toBeUndefined();
    // It was not stopped: the handler ran its whole 3 seconds (a lower bound the spin
    // itself guarantees, not a timing assumption).
    const ran = Number(end.finishedAt!.seconds - end.startedAt!.seconds) * 1000 + (end.finishedAt!.nanos - end.startedAt!.nanos) / 1e6;
    expect(ran).toBeGreaterThanOrEqual(3000);
  }, 20_000);

  it('escalates to terminate when asked again with terminate', async () => {
    const task = await tw.start('spin', { args: [30] });
    await started(task.id);
    expect((await tw.cancel(task.id)).outcome).toBe(CancelOutcome.REQUESTED);
    expect((await tw.status(task.id)).state).toBe(TaskState.STARTED);
    expect((await tw.cancel(task.id, { terminate: true })).outcome).toBe(CancelOutcome.REQUESTED);
    const end = await final(task.id);
    expect(end.state).toBe(TaskState.REVOKED);
    expect(end.error?.message).toContain('terminated by force');
  }, 20_000);
});

describe('cancel of a task that is not running', () => {
  it('revokes a waiting task at once, and no worker ever runs it', async () => {
    // Nobody reads queue "later" yet; a countdown task waits in the scheduled set.
    const queued = await tw.start('hello', { queue: 'later', args: ['never'] });
    const delayed = await tw.start('hello', { args: ['never'], countdownMs: 1500 });
    const revoked: Task[] = [];
    for (const t of [queued, delayed]) {
      const res = await tw.cancel(t.id, { reason: 'changed my mind' });
      expect(res.outcome).toBe(CancelOutcome.REVOKED);
      expect(res.message).toMatch(/had not started/);
      expect(res.task?.state).toBe(TaskState.REVOKED);
      expect(res.task?.error?.message).toBe('changed my mind');
      revoked.push(res.task!);
    }

    // A worker for "later" drains its queue: the task started after the revoked one runs,
    // so the revoked one, ahead of it in the stream, has been read and dropped.
    const worker = await stack.startWorker({ args: ['--queues', 'later'] });
    const sentinel = await tw.start('hello', { queue: 'later', args: ['after'] });
    // And the countdown one's time comes and goes: a task due after it runs.
    const delayedSentinel = await tw.start('hello', { args: ['after'], countdownMs: 1500 });
    expect((await final(sentinel.id)).state).toBe(TaskState.SUCCESS);
    expect((await final(delayedSentinel.id)).state).toBe(TaskState.SUCCESS);

    for (const before of revoked) {
      const after = await tw.status(before.id);
      expect(after.version).toBe(before.version);
      expect(after.state).toBe(TaskState.REVOKED);
      expect(after.attempt).toBe(0);
      expect(after.worker).toBe('');
      expect(after.startedAt).toBeUndefined();
    }
    // Nothing of it is left waiting or in flight: every message was delivered and acknowledged.
    const [flat] = (await redis.xinfo('GROUPS', keys.stream('later'))) as unknown[][];
    const group = Object.fromEntries(Array.from({ length: flat!.length / 2 }, (_, i) => [flat![2 * i], flat![2 * i + 1]]));
    expect(group).toMatchObject({ name: CONSUMER_GROUP, lag: 0, pending: 0 });
    expect((await redis.xpending(keys.stream('later'), CONSUMER_GROUP))[0]).toBe(0);
    expect(await redis.zcard(keys.scheduled('default'))).toBe(0);
    await worker.stop();
  });

  it('leaves a finished task as it was and says so', async () => {
    const task = await tw.start('hello', { args: ['done'] });
    const done = await final(task.id);
    for (const terminate of [false, true]) {
      const res = await tw.cancel(task.id, { terminate });
      expect(res.outcome).toBe(CancelOutcome.ALREADY_FINISHED);
      expect(res.message).toMatch(/already finished; nothing changed/);
      expect(res.task?.version).toBe(done.version);
    }
    const after = await tw.status(task.id);
    expect(after.version).toBe(done.version);
    expect(after.state).toBe(TaskState.SUCCESS);
    expect(after.cancelRequested).toBe(false);
    expect(resultOf(after)).toBe('Hello done!');
  });
});

describe('cancel with several workers and API servers', () => {
  it('reaches the worker holding the task when another API server receives the cancel', async () => {
    const other = await stack.startApi();
    const second = await stack.startWorker({ args: ['--concurrency', '1'] });
    const there = createTaskwireClient({ baseUrl: `http://127.0.0.1:${other.port}` });
    // Four long tasks fill the 3 + 1 slots of the two workers.
    const tasks = await Promise.all([1, 2, 3, 4].map(() => tw.start('sleep', { args: [30] })));
    const running = await Promise.all(tasks.map((t) => started(t.id)));
    expect(new Set(running.map((t) => t.worker)).size).toBe(2);

    for (const [i, t] of tasks.entries()) {
      const res = await there.cancel(t.id, { terminate: i % 2 === 1, reason: `cancel ${i}` });
      expect(res.outcome).toBe(CancelOutcome.REQUESTED);
    }
    for (const [i, t] of tasks.entries()) {
      const end = await final(t.id, there);
      expect(end.state).toBe(TaskState.REVOKED);
      expect(end.error?.message).toContain(`cancel ${i}`);
    }
    await second.stop();
  }, 20_000);
});
