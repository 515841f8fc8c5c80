/**
 * A worker begins no more tasks than it has free slots, even as it reads several queues
 * and begins tasks in the round trip that finishes others (AttemptStore.take): a task is
 * STARTED only when a slot runs it, never while it waits in the worker.
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

describe('a worker with two queues and two slots', () => {
  it('never has more than two tasks STARTED, and runs every task of both queues', async () => {
    const queues = ['slots-a', 'slots-b'];
    const ids = new Set<string>();
    for (const queue of queues) {
      for (let i = 0; i < 6; i++) ids.add((await stack.client.start('sleep', { args: [0.1], queue })).id);
    }

    // Every change of every task, in the order Redis made them.
    const stop = new AbortController();
    const events = stack.client.rpc.watchEvents({}, { signal: stop.signal })[Symbol.asyncIterator]();
    await events.next(); // the stream is live (its first message is a heartbeat or a change)

    await stack.startWorker({ args: ['--queues', queues.join(','), '--concurrency', '2'] });
    const started = new Set<string>();
    const succeeded = new Set<string>();
    let most = 0;
    while (succeeded.size < ids.size) {
      const { value, done } = await events.next();
      if (done) throw new Error('the event stream ended');
      if (value.event.case !== 'task' || !ids.has(value.event.value.id)) continue;
      const task = value.event.value;
      if (task.state === TaskState.STARTED) started.add(task.id);
      else if (task.state === TaskState.SUCCESS) {
        started.delete(task.id);
        succeeded.add(task.id);
      } else throw new Error(`task ${task.id} went ${TaskState[task.state]}`);
      most = Math.max(most, started.size);
    }
    stop.abort();
    expect(most).toBe(2);
  });
});
