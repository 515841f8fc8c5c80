/**
 * A worker begins no more tasks than it has free slots, even as it reads several queues
 * and begins tasks in the round trip that finishes others (AttemptStore.take): a task is
 * STARTED only when a slot runs it, never while it waits in the worker. At high
 * concurrency a turn goes to Redis as several script calls, each beginning no more tasks
 * than the slots free once its own finishes and the earlier calls' are written.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TaskState } from '../src/client/index.js';
import { startStack, type Stack } from './helpers/stack.js';

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ workers: 0 });
});
afterAll(async () => {
  await stack?.stop();
});

/**
 * Starts a worker with `concurrency` slots on `queues` and follows every change of every
 * task, in the order Redis made them, until each of `ids` succeeded (once). Returns the
 * most tasks that were STARTED at once.
 */
async function mostStarted(ids: Set<string>, queues: string[], concurrency: number): Promise<number> {
  const stop = new AbortController();
  const events = stack.client.rpc.watchEvents({}, { signal: stop.signal })[Symbol.asyncIterator]();
  await events.next(); // the stream is live (its first message is a heartbeat or a change)

  const worker = await stack.startWorker({ args: ['--queues', queues.join(','), '--concurrency', String(concurrency)] });
  const started = new Set<string>();
  const succeeded = new Set<string>();
  let most = 0;
  try {
    while (succeeded.size < ids.size) {
      const { value, done } = await events.next();
      if (done) throw new Error('the event stream ended');
      if (value.event.case !== 'task' || !ids.has(value.event.value.id)) continue;
      const task = value.event.value;
      if (task.state === TaskState.STARTED) started.add(task.id);
      else if (task.state === TaskState.SUCCESS) {
        if (succeeded.has(task.id)) throw new Error(`task ${task.id} succeeded twice`);
        if (task.attempt !== 1) throw new Error(`task ${task.id} succeeded on attempt ${task.attempt}`);
        started.delete(task.id);
        succeeded.add(task.id);
      } else throw new Error(`task ${task.id} went ${TaskState[task.state]}`);
      most = Math.max(most, started.size);
    }
  } finally {
    stop.abort();
    await worker.stop();
  }
  return most;
}

describe('a worker with two queues and two slots', () => {
  it('never has more than two tasks STARTED, and runs every task of both queues', async () => {
    const queues = ['slots-a', 'slots-b'];
    const ids = new Set<string>();
    for (const queue of queues) {
      for (let i = 0; i < 6; i++) ids.add((await stack.client.start('sleep', { args: [0.1], queue })).id);
    }
    expect(await mostStarted(ids, queues, 2)).toBe(2);
  });
});

describe('a worker with 100 slots', () => {
  it('never has more than 100 tasks STARTED, and runs each of 600 quick tasks once', async () => {
    const queue = 'slots-wide';
    const starts = Array.from({ length: 600 }, (_, i) => stack.client.start('hello', { args: [`n${i}`], queue }));
    const ids = new Set((await Promise.all(starts)).map((t) => t.id));
    expect(ids.size).toBe(600);
    const most = await mostStarted(ids, [queue], 100);
    expect(most).toBeGreaterThan(1);
    expect(most).toBeLessThanOrEqual(100);
  });
});
