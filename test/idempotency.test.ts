/**
 * Idempotent start: Start with an idempotency key returns the task the key first started
 * (within the result TTL) instead of starting another, so a client may retry a Start whose
 * answer it lost. Concurrent Starts with one key, on two API servers, make one task, run once.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { argsOf, createTaskwireClient, TaskState, type TaskwireClient } from '../src/client/index.js';
import { sideEffectKey } from './fixtures/faultTasks.js';
import { Follow, states } from './helpers/follow.js';
import { redisClient } from './helpers/redis.js';
import { startStack, type Stack } from './helpers/stack.js';

// Generous bounds for a loaded machine (each test waits on events, never on a clock).
vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

let stack: Stack;
let second: TaskwireClient;
let redis: Redis;

beforeAll(async () => {
  stack = await startStack({ workers: 1, env: { TASKWIRE_TASKS: 'test/fixtures/faultTasks.ts' }, workerArgs: ['-c', '2'] });
  const api2 = await stack.startApi();
  second = createTaskwireClient({ baseUrl: `http://127.0.0.1:${api2.port}` });
  redis = redisClient(stack.redis.url);
});
afterAll(async () => {
  redis?.disconnect();
  await stack?.stop();
});

/** How many times the task's handler performed its side effect. */
const sideEffects = async (id: string) => Number((await redis.get(sideEffectKey(id))) ?? 0);

describe('Start with an idempotency key', () => {
  it('returns the same task when called again, before and after it ran, and runs it once', async () => {
    const first = await stack.client.start('chaos', { kwargs: { ms: 300 }, idempotencyKey: 'order-1' });
    expect(first.idempotencyKey).toBe('order-1');
    const again = await stack.client.start('chaos', { kwargs: { ms: 300 }, idempotencyKey: 'order-1' });
    expect(again.id).toBe(first.id);

    const seen = await new Follow(stack.client, first.id).end();
    expect(states(seen)).toEqual(['PENDING', 'STARTED', 'SUCCESS']);
    const late = await stack.client.start('chaos', { kwargs: { ms: 300 }, idempotencyKey: 'order-1' });
    expect(late.id).toBe(first.id);
    expect(late.state).toBe(TaskState.SUCCESS); // the existing record, as it stands
    expect(await sideEffects(first.id)).toBe(1);
  });

  it('makes one task of many concurrent Starts on two API servers', async () => {
    const clients = [stack.client, second];
    const tasks = await Promise.all(
      Array.from({ length: 20 }, (_, i) => clients[i % 2]!.start('chaos', { kwargs: { ms: 100 }, idempotencyKey: 'order-2' })),
    );
    const ids = new Set(tasks.map((t) => t.id));
    expect(ids.size).toBe(1);
    const [id] = [...ids];
    const seen = await new Follow(stack.client, id!).end();
    expect(states(seen)).toEqual(['PENDING', 'STARTED', 'SUCCESS']);
    expect(await sideEffects(id!)).toBe(1);
  });

  it('returns the first task even when the arguments differ: the key names the task', async () => {
    const first = await stack.client.start('hello', { args: ['first'], idempotencyKey: 'order-3' });
    const other = await stack.client.start('hello', { args: ['second'], idempotencyKey: 'order-3' });
    expect(other.id).toBe(first.id);
    expect(argsOf(other)).toEqual(['first']);
  });

  it('starts different tasks for different keys, and for the same key on another queue', async () => {
    const a = await stack.client.start('hello', { idempotencyKey: 'order-4' });
    const b = await stack.client.start('hello', { idempotencyKey: 'order-5' });
    const c = await stack.client.start('hello', { idempotencyKey: 'order-4', queue: 'elsewhere' });
    expect(new Set([a.id, b.id, c.id]).size).toBe(3);
    await stack.client.cancel(c.id); // no worker reads that queue
  });
});
