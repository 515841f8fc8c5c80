/**
 * Trimming the queue streams (src/broker/trimmer.ts, trim-1.lua): acknowledged entries are
 * removed in bulk, never an entry that waits for delivery or is still pending (a worker may
 * be running it, or die and leave it to be reclaimed); and a worker trims its queue by
 * itself once it acknowledged messages.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureGroups } from '../src/broker/consumer.js';
import { trimQueue } from '../src/broker/trimmer.js';
import { installScripts } from '../src/store/scripts.js';
import { CONSUMER_GROUP, keys } from '../src/store/keys.js';
import { redisClient, startRedis, type RedisServer } from './helpers/redis.js';
import { startStack, type Stack } from './helpers/stack.js';

async function group(redis: Redis, queue: string): Promise<Record<string, unknown>> {
  const [flat] = (await redis.xinfo('GROUPS', keys.stream(queue))) as unknown[][];
  return Object.fromEntries(Array.from({ length: flat!.length / 2 }, (_, i) => [flat![2 * i], flat![2 * i + 1]]));
}

async function ids(redis: Redis, queue: string): Promise<string[]> {
  return (await redis.xrange(keys.stream(queue), '-', '+')).map(([id]) => id);
}

describe('trimQueue', () => {
  let server: RedisServer;
  let redis: Redis;
  beforeAll(async () => {
    server = await startRedis();
    redis = redisClient(server.url);
    installScripts(redis);
  });
  afterAll(async () => {
    redis?.disconnect();
    await server?.stop();
  });

  it('removes the entries that were delivered and acknowledged, up to the oldest one still pending', async () => {
    const q = 'trim-a';
    const stream = keys.stream(q);
    await ensureGroups(redis, [q]);
    const all: string[] = [];
    for (let i = 0; i < 6; i++) all.push((await redis.xadd(stream, '*', 'id', `t${i}`, 'k', ''))!);
    expect(await trimQueue(redis, q)).toBe(0); // nothing delivered yet

    // Four delivered; the second still pending, the others acknowledged.
    await redis.xreadgroup('GROUP', CONSUMER_GROUP, 'w1', 'COUNT', 4, 'STREAMS', stream, '>');
    await redis.xack(stream, CONSUMER_GROUP, all[0]!, all[2]!, all[3]!);
    expect(await trimQueue(redis, q)).toBe(1);
    expect(await ids(redis, q)).toEqual(all.slice(1));
    // What waits is still counted as waiting, and the pending entry can still be reclaimed.
    expect(await group(redis, q)).toMatchObject({ lag: 2, pending: 1 });
    const [, claimed] = (await redis.xautoclaim(stream, CONSUMER_GROUP, 'w2', 0, '0-0')) as [string, [string, string[]][]];
    expect(claimed.map(([id, fields]) => [id, fields[1]])).toEqual([[all[1], 't1']]);

    await redis.xack(stream, CONSUMER_GROUP, all[1]!);
    expect(await trimQueue(redis, q)).toBe(3);
    expect(await ids(redis, q)).toEqual(all.slice(4)); // the two never delivered

    await redis.xreadgroup('GROUP', CONSUMER_GROUP, 'w1', 'COUNT', 10, 'STREAMS', stream, '>');
    await redis.xack(stream, CONSUMER_GROUP, all[4]!, all[5]!);
    expect(await trimQueue(redis, q)).toBe(2);
    expect(await redis.xlen(stream)).toBe(0);
    expect(await group(redis, q)).toMatchObject({ lag: 0, pending: 0 });

    // An entry added after the stream was emptied waits for delivery like any other.
    const later = await redis.xadd(stream, '*', 'id', 't6', 'k', '');
    expect(await trimQueue(redis, q)).toBe(0);
    expect(await ids(redis, q)).toEqual([later]);
    expect(await group(redis, q)).toMatchObject({ lag: 1, pending: 0 });
  });

  it('does nothing to a queue that does not exist', async () => {
    expect(await trimQueue(redis, 'trim-none')).toBe(0);
    expect(await redis.exists(keys.stream('trim-none'))).toBe(0);
  });
});

describe('a worker', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ workers: 0 });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('trims the queue it drained', async () => {
    const tasks = await Promise.all(Array.from({ length: 20 }, (_, i) => stack.client.start('hello', { args: [`t${i}`] })));
    const redis = redisClient(stack.redis.url);
    try {
      expect(await redis.xlen(keys.stream('default'))).toBe(20);
      stack.workers.push(await stack.startWorker());
      for (const t of tasks) await stack.client.wait(t.id);
      // The entries go with the worker's next trim, about a second after the last task.
      const deadline = Date.now() + 10_000;
      while ((await redis.xlen(keys.stream('default'))) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(await redis.xlen(keys.stream('default'))).toBe(0);
      expect(await group(redis, 'default')).toMatchObject({ lag: 0, pending: 0 });
    } finally {
      redis.disconnect();
    }
  });
});
