/**
 * A change's log entry, and the change published with it, holds only the fields that change
 * wrote (with the task's id, name, queue, state and version); a record is whole only at
 * creation. What users see is unchanged: every WatchStatus record is the whole record at
 * its version, a watch resuming from any version sees exactly what a watch from the start
 * saw after it, a field a change deleted is gone, and WatchEvents sends whole records, also
 * of tasks created before it opened.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { TaskState, TERMINAL, type Task } from '../src/client/index.js';
import { keys } from '../src/store/keys.js';
import { describe as show, oneToN, versions } from './helpers/follow.js';
import { redisClient } from './helpers/redis.js';
import { startStack, type Stack } from './helpers/stack.js';

const TASKS = 'test/fixtures/faultTasks.ts';

vi.setConfig({ testTimeout: 30_000, hookTimeout: 60_000 });

let stack: Stack;
let redis: Redis;
beforeAll(async () => {
  stack = await startStack({ workers: 1, env: { TASKWIRE_TASKS: TASKS } });
  redis = redisClient(stack.redis.url);
});
afterAll(async () => {
  redis?.disconnect();
  await stack?.stop();
});

async function watchToEnd(id: string, afterVersion?: bigint): Promise<Task[]> {
  const seen: Task[] = [];
  for await (const t of stack.client.watch(id, { afterVersion, maxRetries: 0 })) {
    seen.push(t);
    if (TERMINAL.has(t.state)) return seen;
  }
  throw new Error(`the watch of ${id} ended before a terminal state: ${seen.map(show).join(' → ')}`);
}

describe('lean log entries', () => {
  it('log only the fields a change wrote after the whole record at creation', async () => {
    const task = await stack.client.start('hello', { args: ['Lean'] });
    await watchToEnd(task.id, 0n);
    const entries = (await redis.xrange(keys.events('default', task.id), '-', '+')) as [string, string[]][];
    const names = entries.map(([, flat]) => flat.filter((_, i) => i % 2 === 0));
    expect(names.length).toBe(3);
    expect(names[0]).toContain('created');
    for (const n of names.slice(1)) {
      expect(n).not.toContain('created');
      expect(n).not.toContain('max_attempts');
      expect(n).toEqual(expect.arrayContaining(['id', 'name', 'queue', 'state', 'version']));
    }
    expect(names[2]).toContain('result');
    expect(names[2]).not.toContain('started');
  });

  it('still send whole records: a retried task, watched from the start and resumed from each version, the same', async () => {
    const task = await stack.client.start('flaky', { kwargs: { succeedOn: 2 } });
    const live = await watchToEnd(task.id, 0n);
    expect(live.map((t) => TaskState[t.state])).toEqual(['PENDING', 'STARTED', 'RETRY', 'STARTED', 'SUCCESS']);
    expect(versions(live)).toEqual(oneToN(5));
    for (const t of live) {
      expect(t.name).toBe('flaky');
      expect(t.maxAttempts).toBe(3);
      expect(t.createdAt).toBeDefined();
      expect(t.kwargs).toEqual({ succeedOn: 2 });
    }
    expect(live[2]!.error?.type).toBe('Flaky');
    // The second claim deleted the error and the due time of the retry.
    expect(live[3]!.error).toBeUndefined();
    expect(live[3]!.nextAttemptAt).toBeUndefined();
    // The finish did not write when the attempt started: the record still says.
    expect(live[4]!.startedAt).toEqual(live[3]!.startedAt);
    expect(live[4]!.attempt).toBe(2);
    for (let v = 0; v < live.length; v++) {
      expect(await watchToEnd(task.id, BigInt(v)), `resumed after version ${v}`).toEqual(live.slice(v));
    }
    // And the last one is what GetStatus reads.
    expect(live.at(-1)).toEqual(await stack.client.status(task.id));
  });

  it('WatchEvents sends whole records, of tasks created before the stream opened too', async () => {
    const before = await stack.client.start('hello', { args: ['Before', 3] });
    for await (const t of stack.client.watch(before.id)) if (t.state === TaskState.STARTED) break;
    const stop = new AbortController();
    const events = stack.client.rpc.watchEvents({}, { signal: stop.signal })[Symbol.asyncIterator]();
    try {
      await events.next(); // live
      const after = await stack.client.start('hello', { args: ['After'] });
      const done = new Set<string>();
      const seen: Task[] = [];
      while (done.size < 2) {
        const next = await events.next();
        if (next.done) throw new Error('WatchEvents ended');
        if (next.value.event.case !== 'task') continue;
        const t = next.value.event.value;
        if (t.id !== before.id && t.id !== after.id) continue;
        seen.push(t);
        if (TERMINAL.has(t.state)) done.add(t.id);
      }
      for (const t of seen) {
        expect(t.name, show(t)).toBe('hello');
        expect(t.createdAt, show(t)).toBeDefined();
        expect(t.maxAttempts, show(t)).toBe(3);
      }
      const ends = seen.filter((t) => TERMINAL.has(t.state));
      expect(ends.map((t) => t.result)).toEqual(expect.arrayContaining([expect.anything(), expect.anything()]));
      for (const t of ends) expect(t.startedAt, show(t)).toBeDefined();
      // The task created while the stream was open: each of its versions, in order.
      expect(versions(seen.filter((t) => t.id === after.id))).toEqual(oneToN(3));
    } finally {
      stop.abort();
    }
  });
});
