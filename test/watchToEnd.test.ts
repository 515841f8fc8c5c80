/**
 * A watch that saw its task's terminal state reads its stream to the server's end instead
 * of resetting it. A client that reset every finished watch had its connection ended by
 * the server after about a thousand (nghttp2's rapid-reset guard answers a burst of client
 * resets with GOAWAY INTERNAL_ERROR), and every call on that connection failed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TaskState } from '../src/client/index.js';
import { startStack, type Stack } from './helpers/stack.js';

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ workerArgs: ['--concurrency', '16'] });
});
afterAll(async () => {
  await stack?.stop();
});

describe('one client, one connection', () => {
  it('starts and watches 1,300 tasks to their end, 100 at a time, and every watch ends in SUCCESS', async () => {
    const total = 1300;
    let next = 0;
    const states: TaskState[] = [];
    const one = async () => {
      while (next < total) {
        next++;
        const task = await stack.client.start('hello');
        let last: TaskState | undefined;
        for await (const t of stack.client.watch(task.id, { maxRetries: 0 })) last = t.state;
        states.push(last!);
      }
    };
    await Promise.all(Array.from({ length: 100 }, one));
    expect(states).toHaveLength(total);
    expect(states.filter((s) => s !== TaskState.SUCCESS)).toEqual([]);
  });
});
