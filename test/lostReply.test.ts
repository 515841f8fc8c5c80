/**
 * A worker whose Redis connections keep dropping: a script call that begins tasks may run
 * in Redis and lose its reply, and ioredis then sends it again once it reconnects. Whatever
 * the worker began it must run; a lost reply must not burn an attempt. With one attempt
 * each, a task begun and never run would end FAILURE WorkerLostError once the reclaimer
 * found its lease unrenewed, though no worker was lost.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { TaskState, type Task } from '../src/client/index.js';
import { keys } from '../src/store/keys.js';
import { redisClient } from './helpers/redis.js';
import { startStack, type Stack } from './helpers/stack.js';

vi.setConfig({ testTimeout: 180_000, hookTimeout: 60_000 });

const queue = 'lost-reply';
let stack: Stack;
let admin: Redis;

beforeAll(async () => {
  // A short lease, so that a task begun and left unrun is reclaimed (and failed) within the test.
  stack = await startStack({ workers: 0, env: { TASKWIRE_LEASE: '2s' } });
  admin = redisClient(stack.redis.url);
});
afterAll(async () => {
  admin?.disconnect();
  await stack?.stop();
});

/** Drop every connection of the worker's (by client id, named taskwire:worker…), as CLIENT KILL TYPE normal would. */
async function dropWorkerConnections(): Promise<number> {
  const list = (await admin.client('LIST')) as string;
  const ids = list
    .split('\n')
    .filter((line) => / name=taskwire:worker/.test(line))
    .map((line) => /^id=(\d+)/.exec(line)?.[1])
    .filter((id): id is string => id !== undefined);
  for (const id of ids) await admin.client('KILL', 'ID', id).catch(() => {});
  return ids.length;
}

/** The task as it ended. */
async function end(task: Task): Promise<Task> {
  let last = task;
  for await (const t of stack.client.watch(task)) last = t;
  return last;
}

describe('a worker whose Redis connections keep dropping', () => {
  it('runs every task it begins: with one attempt each, every task ends SUCCESS', async () => {
    // Queued first, so that the worker begins them by the take of its script calls.
    const tasks: Task[] = [];
    for (let batch = 0; batch < 15; batch++) {
      const starts = Array.from({ length: 200 }, (_, i) => stack.client.start('hello', { args: [`n${batch}-${i}`], queue, maxAttempts: 1 }));
      tasks.push(...(await Promise.all(starts)));
    }
    await stack.startWorker({ args: ['-c', '50'], env: { TASKWIRE_QUEUES: queue, TASKWIRE_WORKER_NAME: 'dropped' } });
    let dropping = true;
    let drops = 0;
    const dropper = (async () => {
      while (dropping) {
        drops += await dropWorkerConnections();
        await new Promise((r) => setTimeout(r, 40));
      }
    })();

    const ends: Task[] = [];
    for (let i = 0; i < tasks.length; i += 100) ends.push(...(await Promise.all(tasks.slice(i, i + 100).map(end))));
    dropping = false;
    await dropper;

    expect(drops).toBeGreaterThan(0);
    const failed = ends.filter((t) => t.state !== TaskState.SUCCESS).map((t) => `${t.id}: ${TaskState[t.state]} ${t.error?.type ?? ''}`);
    expect(failed).toEqual([]);
    expect(ends.every((t) => t.attempt === 1)).toBe(true);
    // The replies kept for calls sent again are dropped once answered (the drain made far
    // more calls than the bound), and the rest expire within two leases.
    const kept = keys.replies(queue, 'dropped');
    expect(await admin.hlen(kept)).toBeLessThan(50);
    expect(await admin.pttl(kept)).toBeLessThanOrEqual(2 * 2000);
  });
});
