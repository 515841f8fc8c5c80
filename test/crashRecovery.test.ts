/**
 * Worker crash: a worker killed with SIGKILL mid-task stops renewing its lease; another
 * worker takes the task over (XAUTOCLAIM of messages idle for a lease) and runs it again as
 * a new attempt, or ends it FAILURE WorkerLostError when its attempts are spent. A long
 * task on a live worker, even one that never yields its thread, is never taken over.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Code, ConnectError, resultOf, TaskState } from '../src/client/index.js';
import { CONSUMER_GROUP, keys } from '../src/store/keys.js';
import { describe as show, Follow, isState, oneToN, states, versions } from './helpers/follow.js';
import type { TaskwireProcess } from './helpers/processes.js';
import { redisClient } from './helpers/redis.js';
import { startStack, type Stack } from './helpers/stack.js';

// Generous bounds for a loaded machine (each test waits on events, never on a clock).
vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

let stack: Stack;
let started: TaskwireProcess[] = [];

beforeAll(async () => {
  stack = await startStack({ workers: 0, env: { TASKWIRE_LEASE: '2s' } });
});
afterEach(async () => {
  await Promise.all(started.map((p) => p.stop(5000)));
  started = [];
});
afterAll(async () => {
  await stack?.stop();
});

async function worker(queue: string, name: string, concurrency = 1): Promise<TaskwireProcess> {
  const p = await stack.startWorker({
    args: ['-c', String(concurrency)],
    env: { TASKWIRE_QUEUES: queue, TASKWIRE_WORKER_NAME: name },
  });
  started.push(p);
  return p;
}

async function expectCode(p: Promise<unknown>, code: Code): Promise<ConnectError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  expect(err?.code, err?.message ?? 'the call succeeded').toBe(code);
  return err!;
}

describe('a worker killed mid-task', () => {
  it('runs the task again as attempt 2 on another worker, which ends it SUCCESS', async () => {
    const queue = 'crash-rerun';
    const [a, b] = await Promise.all([worker(queue, 'rerun-a'), worker(queue, 'rerun-b')]);
    const procs = { 'rerun-a': a, 'rerun-b': b };
    const task = await stack.client.start('sleep', { args: [2], queue, exclusiveKey: 'rerun' });
    const follow = new Follow(stack.client, task.id);
    const first = await follow.until(isState(TaskState.STARTED), 'the first attempt started');
    const victim = first.worker as keyof typeof procs;
    const survivor = victim === 'rerun-a' ? 'rerun-b' : 'rerun-a';
    expect(await procs[victim].kill()).toBe('SIGKILL');

    // Until the task ends, its exclusive key stays held: the lost attempt is not the end.
    const refused = await expectCode(stack.client.start('hello', { queue, exclusiveKey: 'rerun' }), Code.AlreadyExists);
    expect(refused.rawMessage).toContain(task.id);

    const seen = await follow.end();
    expect(seen.map(show)).toEqual(['v1 PENDING#0', `v2 STARTED#1@${victim}`, `v3 STARTED#2@${survivor}`, `v4 SUCCESS#2@${survivor}`]);
    expect(resultOf(seen.at(-1)!)).toEqual({ slept: 2 });
    expect(procs[survivor].output()).toContain(`task ${task.id}: taken over from a worker that stopped renewing its lease`);

    // The end of the task freed its key.
    const next = await stack.client.start('hello', { queue, exclusiveKey: 'rerun' });
    expect(next.id).not.toBe(task.id);
  });

  it("leaves the queue's consumer group once its task was taken over; live workers stay", async () => {
    const queue = 'crash-forget';
    const [a, b] = await Promise.all([worker(queue, 'forget-a'), worker(queue, 'forget-b')]);
    const procs = { 'forget-a': a, 'forget-b': b };
    const task = await stack.client.start('sleep', { args: [0.5], queue });
    const follow = new Follow(stack.client, task.id);
    const victim = (await follow.until(isState(TaskState.STARTED), 'the task started')).worker as keyof typeof procs;
    const survivor = victim === 'forget-a' ? 'forget-b' : 'forget-a';
    await procs[victim].kill();
    await follow.end();

    // The survivor forgets the dead worker once it held nothing and was silent for 3 leases.
    await procs[survivor].waitFor(new RegExp(`forgot worker ${victim} on queue ${queue}`));
    const redis = redisClient(stack.redis.url);
    try {
      const consumers = (await redis.xinfo('CONSUMERS', keys.stream(queue), CONSUMER_GROUP)) as unknown[][];
      expect(consumers.map((c) => c[c.indexOf('name') + 1])).toEqual([survivor]);
    } finally {
      redis.disconnect();
    }
  });

  it('ends the task FAILURE WorkerLostError when its attempts are spent, and frees its exclusive key', async () => {
    const queue = 'crash-lost';
    const [a, b] = await Promise.all([worker(queue, 'lost-a'), worker(queue, 'lost-b')]);
    const procs = { 'lost-a': a, 'lost-b': b };
    const task = await stack.client.start('sleep', { args: [30], queue, exclusiveKey: 'lost', maxAttempts: 1 });
    const follow = new Follow(stack.client, task.id);
    const first = await follow.until(isState(TaskState.STARTED), 'the attempt started');
    await procs[first.worker as keyof typeof procs].kill();

    const seen = await follow.end();
    expect(states(seen)).toEqual(['PENDING', 'STARTED', 'FAILURE']);
    const end = seen.at(-1)!;
    expect(end.attempt).toBe(1);
    expect(end.maxAttempts).toBe(1);
    expect(end.error?.type).toBe('WorkerLostError');
    expect(end.error?.message).toContain('lost');
    expect(end.finishedAt).toBeDefined();

    const next = await stack.client.start('hello', { queue, exclusiveKey: 'lost' });
    expect(next.id).not.toBe(task.id);
  });

  it('recovers every task the dead worker held', async () => {
    const queue = 'crash-many';
    const victim = await worker(queue, 'many-victim', 3);
    const tasks = await Promise.all([1, 2, 3].map(() => stack.client.start('sleep', { args: [30], queue })));
    const follows = tasks.map((t) => new Follow(stack.client, t.id));
    await Promise.all(follows.map((f) => f.until(isState(TaskState.STARTED), 'the first attempt started')));
    await victim.kill();
    // Started after the kill: the tasks wait for it, PENDING and STARTED on a dead worker.
    await worker(queue, 'many-rescuer', 3);
    const ends = await Promise.all(follows.map((f) => f.until((t) => t.attempt === 2 && t.state === TaskState.STARTED, 'attempt 2 started')));
    for (const t of ends) expect(t.worker).toBe('many-rescuer');
    await Promise.all(tasks.map((t) => stack.client.cancel(t.id, { terminate: true })));
  });
});

describe('a busy queue', () => {
  it("does not make a dead worker's task wait behind it: the next free slot takes it first", async () => {
    const queue = 'crash-busy';
    const victim = await worker(queue, 'busy-victim');
    const lost = await stack.client.start('sleep', { args: [30], queue });
    const follow = new Follow(stack.client, lost.id);
    await follow.until(isState(TaskState.STARTED), 'the task started on the victim');
    await worker(queue, 'busy-rescuer');
    // A queue the rescuer's one slot needs a dozen seconds to work through.
    const queued = await Promise.all(Array.from({ length: 12 }, () => stack.client.start('sleep', { args: [1], queue })));
    await victim.kill();

    await follow.until((t) => t.state === TaskState.STARTED && t.attempt === 2, 'attempt 2 started');
    const waiting = await Promise.all(queued.map((t) => stack.client.status(t.id)));
    expect(waiting.filter((t) => t.state === TaskState.PENDING).length).toBeGreaterThan(0);
    await Promise.all([lost, ...queued].map((t) => stack.client.cancel(t.id)));
  });
});

describe('a long task on a live worker', () => {
  it('is never taken over, however long it runs past the lease, even when it blocks its thread', async () => {
    const queue = 'crash-long';
    const procs = await Promise.all([worker(queue, 'long-a'), worker(queue, 'long-b')]);
    // 3 and 2.5 leases; `spin` never yields its thread.
    const tasks = await Promise.all([stack.client.start('sleep', { args: [6], queue }), stack.client.start('spin', { args: [5], queue })]);
    const seen = await Promise.all(tasks.map((t) => new Follow(stack.client, t.id).end()));
    for (const history of seen) {
      expect(states(history)).toEqual(['PENDING', 'STARTED', 'SUCCESS']);
      expect(versions(history)).toEqual(oneToN(3));
      expect(history.at(-1)!.attempt).toBe(1);
    }
    for (const p of procs) expect(p.output()).not.toContain('taken over');
  });
});
