/**
 * taskwire on a real Redis Cluster of three masters, with a queue served by each master:
 * what a user sees is what they see on one Redis.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code, ConnectError, resultOf, TaskState, TaskwireClient, type Task } from '../src/client/index.js';
import { startTaskwire } from './helpers/processes.js';
import { startStack, type Stack } from './helpers/stack.js';

let stack: Stack;
let queues: string[];
beforeAll(async () => {
  // The queues are known once the cluster is up: a second worker reads them.
  stack = await startStack({ cluster: {}, env: { TASKWIRE_QUEUES: 'default', TASKWIRE_LEASE: '2s' } });
  queues = stack.cluster!.queuesPerMaster('c');
  stack.workers.push(await stack.startWorker({ env: { TASKWIRE_QUEUES: ['default', ...queues].join(',') } }));
}, 60_000);
afterAll(async () => {
  await stack?.stop();
});

async function collect(id: string, afterVersion?: number): Promise<Task[]> {
  const seen: Task[] = [];
  for await (const t of stack.client.watch(id, { afterVersion })) seen.push(t);
  return seen;
}

async function rpcError(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error('the call succeeded; an error was expected');
}

describe('on a Redis Cluster', () => {
  it('names a queue on each of the three masters', async () => {
    expect(new Set(await stack.cluster!.masters()).size).toBe(3);
    expect(queues).toHaveLength(3);
  });

  it('runs a task on every master, watched from its creation', async () => {
    for (const queue of queues) {
      const task = await stack.client.start('hello', { args: [queue], queue });
      const seen = await collect(task.id, 0);
      expect(seen.map((t) => t.state)).toEqual([TaskState.PENDING, TaskState.STARTED, TaskState.SUCCESS]);
      expect(resultOf(seen.at(-1)!)).toBe(`Hello ${queue}!`);
      expect((await stack.client.status(task.id)).state).toBe(TaskState.SUCCESS);
    }
  });

  it('starts many at once across masters, lists them per queue and streams their events', async () => {
    const stop = new AbortController();
    const events = stack.client.rpc.watchEvents({ queue: queues[1]! }, { signal: stop.signal })[Symbol.asyncIterator]();
    try {
      await events.next(); // live
      const res = await stack.client.rpc.startMany({ requests: queues.map((queue) => TaskwireClient.startRequest('add', { args: [1, 2], queue })) });
      const ids = res.results.map((r) => (r.outcome.case === 'task' ? r.outcome.value.id : ''));
      expect(ids.every(Boolean)).toBe(true);
      for (const id of ids) expect(await stack.client.wait(id)).toBe(3);
      const states: TaskState[] = [];
      while (!states.includes(TaskState.SUCCESS)) {
        const next = await events.next();
        if (next.value?.event.case === 'task' && next.value.event.value.id === ids[1]) states.push(next.value.event.value.state);
      }
      expect(states).toEqual([TaskState.PENDING, TaskState.STARTED, TaskState.SUCCESS]);
      for (const [i, queue] of queues.entries()) {
        const listed = await stack.client.rpc.listTasks({ queue, pageSize: 500 });
        expect(listed.tasks.map((t) => t.id)).toContain(ids[i]);
      }
    } finally {
      stop.abort();
    }
  });

  it('cancels a queued task and terminates a running one, on every master', async () => {
    for (const queue of queues) {
      const later = await stack.client.start('hello', { queue, countdownMs: 60_000 });
      await stack.client.cancel(later.id);
      expect((await stack.client.status(later.id)).state).toBe(TaskState.REVOKED);
      const running = await stack.client.start('spin', { args: [60], queue });
      for await (const t of stack.client.watch(running.id)) if (t.state === TaskState.STARTED) break;
      await stack.client.cancel(running.id, { terminate: true });
      expect((await collect(running.id)).at(-1)?.state).toBe(TaskState.REVOKED);
    }
  });

  it('keeps an exclusive key, an idempotency key and the latest task per queue', async () => {
    for (const queue of queues) {
      const holder = await stack.client.start('sleep', { args: [30], queue, exclusiveKey: 'report' });
      const refused = await rpcError(stack.client.start('sleep', { queue, exclusiveKey: 'report' }));
      expect(refused.code).toBe(Code.AlreadyExists);
      expect((await stack.client.status({ queue, exclusiveKey: 'report' })).id).toBe(holder.id);
      const first = await stack.client.start('hello', { queue, idempotencyKey: 'order-7' });
      const again = await stack.client.start('hello', { queue, idempotencyKey: 'order-7' });
      expect(again.id).toBe(first.id);
      expect((await stack.client.status({ queue })).id).toBe(first.id);
      await stack.client.cancel(holder.id, { terminate: true });
    }
  });

  it('retries and waits out a countdown', async () => {
    for (const queue of queues) {
      const failing = await stack.client.start('fail', { queue, maxAttempts: 2, initialBackoffMs: 100, maxBackoffMs: 100, retryOn: ['Error'] });
      const end = (await collect(failing.id)).at(-1)!;
      expect(end.state).toBe(TaskState.FAILURE);
      expect(end.attempt).toBe(2);
      const delayed = await stack.client.start('hello', { queue, countdownMs: 300 });
      expect(await stack.client.wait(delayed.id)).toBe('Hello Bob!');
    }
  });

  it('runs a chain within one queue', async () => {
    const queue = queues[2]!;
    const { chain, signature } = stack.client;
    const wf = await chain(signature('add', { args: [1, 2], queue }), signature('add', { args: [10], queue })).start({ queue });
    const end = (await collect(wf.id)).at(-1)!;
    expect(end.state).toBe(TaskState.SUCCESS);
    expect(resultOf(end)).toBe(13);
  });

  it('refuses, before writing anything, a workflow whose steps are in another queue than its own', async () => {
    const { chain, signature } = stack.client;
    const before = await stack.client.rpc.listTasks({ queue: queues[1]!, pageSize: 500 });
    const err = await rpcError(
      chain(signature('add', { args: [1, 2], queue: queues[0]! }), signature('add', { args: [10], queue: queues[1]! })).start({ queue: queues[0]! }),
    );
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toMatch(/^root: on a Redis Cluster every task of a workflow runs in the workflow's queue/);
    expect((await stack.client.rpc.listTasks({ queue: queues[1]!, pageSize: 500 })).tasks.length).toBe(before.tasks.length);
  });

  it('runs a periodic schedule', async () => {
    const queue = queues[0]!;
    await stack.client.createSchedule('tick', 'hello', { everyMs: 1000, queue });
    for (;;) {
      const listed = await stack.client.rpc.listTasks({ queue, name: 'hello', states: [TaskState.SUCCESS], pageSize: 500 });
      const s = await stack.client.getSchedule('tick');
      if (s.lastTaskId && listed.tasks.some((t) => t.id === s.lastTaskId)) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    await stack.client.deleteSchedule('tick');
  });

  it('reports the figures of queues on every master in /metrics', async () => {
    const api = await stack.startApi({ env: { TASKWIRE_QUEUES: queues.join(',') } });
    for (const queue of queues) await stack.client.start('hello', { queue, countdownMs: 60_000 });
    const text = await (await fetch(`http://127.0.0.1:${api.port}/metrics`)).text();
    for (const queue of queues) expect(text).toMatch(new RegExp(`^taskwire_queue_scheduled\\{queue="${queue}"\\} [1-9]`, 'm'));
    await api.stop();
  });

  it('keeps the leases of tasks running on several masters at once', async () => {
    // Each runs past two leases: a lease not renewed would hand it to another worker.
    const tasks = await Promise.all(queues.map((queue) => stack.client.start('sleep', { args: [5], queue })));
    for (const t of tasks) {
      const end = (await collect(t.id)).at(-1)!;
      expect(end.state).toBe(TaskState.SUCCESS);
      expect(end.attempt).toBe(1);
    }
  }, 30_000);

  it('takes over the tasks of a worker killed mid-run', async () => {
    const queue = queues[1]!;
    const lone = await stack.startWorker({ env: { TASKWIRE_QUEUES: queue } });
    const others = stack.workers;
    // Only the lone worker reads the queue while the task starts.
    await Promise.all(others.map((w) => w.stop()));
    stack.workers = [];
    const task = await stack.client.start('sleep', { args: [1], queue });
    for await (const t of stack.client.watch(task.id)) if (t.state === TaskState.STARTED) break;
    await lone.kill();
    stack.workers.push(await stack.startWorker({ env: { TASKWIRE_QUEUES: queues.join(',') } }));
    const end = (await collect(task.id)).at(-1)!;
    expect(end.state).toBe(TaskState.SUCCESS);
    expect(end.attempt).toBeGreaterThanOrEqual(2);
  }, 60_000);

  it('runs `taskwire dev` against the cluster without a redis-server of its own', async () => {
    const dev = await startTaskwire('dev', {
      env: { REDIS_URL: '', REDIS_CLUSTER_NODES: stack.cluster!.seeds.split(',')[0]!, TASKWIRE_QUEUES: queues[2]! },
    });
    try {
      expect(dev.output()).not.toContain('private redis-server');
      const client = new TaskwireClient({ baseUrl: `http://127.0.0.1:${dev.port}` });
      const task = await client.start('add', { args: [20, 22], queue: queues[2]! });
      expect(await client.wait(task.id)).toBe(42);
    } finally {
      await dev.stop();
    }
  });
});
