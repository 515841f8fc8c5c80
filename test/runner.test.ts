/**
 * The runner in-process, with real handler threads, against a private Redis and a real API
 * server: a message handed to the worker is begun (its claim) and run in a slot held for
 * it; messages handed over beyond the free slots wait, held by this worker (the lease
 * keeper renews them), and each runs once a slot frees.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Consumer, ensureGroups } from '../src/broker/consumer.js';
import { DEFAULT_TASKS_MODULE } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { AttemptStore } from '../src/store/attemptStore.js';
import { CONSUMER_GROUP, keys } from '../src/store/keys.js';
import { installScripts } from '../src/store/scripts.js';
import { Pool } from '../src/worker/pool.js';
import { Runner } from '../src/worker/runner.js';
import { redisClient } from './helpers/redis.js';
import { startStack, type Stack } from './helpers/stack.js';

const log = createLogger('test', { level: 'silent', format: 'json' });
const WORKER = 'runner-test';

let stack: Stack;
let redis: Redis;
let pool: Pool;

beforeAll(async () => {
  stack = await startStack({ workers: 0 });
  redis = redisClient(stack.redis.url);
  installScripts(redis);
  await ensureGroups(redis, ['default']);
  pool = await Pool.create(1, DEFAULT_TASKS_MODULE, log);
});
afterAll(async () => {
  await pool?.close();
  redis?.disconnect();
  await stack?.stop();
});

describe('runner', () => {
  it('runs messages handed over beyond its one slot one after another, holding the waiting ones', async () => {
    const tasks = [];
    for (const name of ['A', 'B', 'C']) tasks.push(await stack.client.start('hello', { args: [name, 0.2] }));
    const reader = new Consumer(redisClient(stack.redis.url), WORKER, ['default']);
    const deliveries = await reader.read(3, 1000);
    reader.close();
    expect(deliveries.map((d) => d.id)).toEqual(tasks.map((t) => t.id));

    let freed = 0;
    const runner = new Runner({
      attempts: new AttemptStore(redis, WORKER, { resultTtlMs: 86_400_000, eventLogCap: 1000, leaseMs: 20_000 }),
      pool,
      canceller: { began: () => {} },
      trimmer: { touch: () => {} },
      promoter: { promoteAt: () => {} },
      log,
      slotFreed: () => freed++,
    });
    for (const d of deliveries) runner.deliver(d);

    // The first is being begun in the one slot; the other two wait here, still this worker's.
    expect(runner.free).toBe(-2);
    expect(runner.held().map((d) => d.id)).toEqual(tasks.slice(1).map((t) => t.id));

    const results = await Promise.all(tasks.map((t) => stack.client.wait(t.id)));
    expect(results).toEqual(['Hello A!', 'Hello B!', 'Hello C!']);
    await runner.idle();
    expect(runner.held()).toEqual([]);
    expect(runner.free).toBe(1);
    expect(freed).toBeGreaterThanOrEqual(3);
    for (const t of tasks) expect((await stack.client.status(t.id)).attempt).toBe(1);
    // Every message was acknowledged by the finish of its attempt.
    const pending = (await redis.xpending(keys.stream('default'), CONSUMER_GROUP)) as [number, ...unknown[]];
    expect(pending[0]).toBe(0);
  });
});
