/**
 * Contracts of the store's Lua scripts, each called alone against a private Redis: what it
 * may touch, what it returns, and what the loader refuses before anything reaches Redis.
 * No taskwire process is started, so this suite is part of the fast tier (`npm run test:fast`).
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { keys } from '../src/store/keys.js';
import { installScripts, runScript } from '../src/store/scripts.js';
import { redisClient, startRedis, type RedisServer } from './helpers/redis.js';

const GROUP = 'workers';
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
beforeEach(async () => {
  await redis.flushall();
});

describe('promote', () => {
  const q = 'contracts';

  it('moves the tasks that are due onto the stream, oldest first, and returns when the next one is due', async () => {
    await redis.zadd(keys.scheduled(q), 100, 'a\n', 200, 'b\nkey-b', 5_000, 'c\n');
    const [moved, next] = (await runScript(redis, 'promote', [keys.scheduled(q), keys.stream(q)], [300, 10])) as [number, string];
    expect(moved).toBe(2);
    expect(Number(next)).toBe(5_000);
    const entries = await redis.xrange(keys.stream(q), '-', '+');
    expect(entries.map(([, fields]) => fields)).toEqual([
      ['id', 'a', 'k', ''],
      ['id', 'b', 'k', 'key-b'],
    ]);
    expect(await redis.zrange(keys.scheduled(q), 0, -1)).toEqual(['c\n']);
    // It touches its two keys and nothing else.
    expect((await redis.keys('*')).sort()).toEqual([keys.scheduled(q), keys.stream(q)].sort());
  });

  it('moves at most the number it is given, and answers -1 when nothing else waits', async () => {
    await redis.zadd(keys.scheduled(q), 1, 'a\n', 2, 'b\n', 3, 'c\n');
    const first = (await runScript(redis, 'promote', [keys.scheduled(q), keys.stream(q)], [10, 2])) as [number, string];
    expect(first[0]).toBe(2);
    expect(Number(first[1])).toBe(3);
    const second = (await runScript(redis, 'promote', [keys.scheduled(q), keys.stream(q)], [10, 2])) as [number, string];
    expect(second).toEqual([1, '-1']);
    expect(await redis.xlen(keys.stream(q))).toBe(3);
  });
});

describe('trim', () => {
  const q = 'contracts';

  it('removes delivered and acknowledged entries and keeps the pending and the undelivered', async () => {
    const stream = keys.stream(q);
    await redis.xgroup('CREATE', stream, GROUP, '0', 'MKSTREAM');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await redis.xadd(stream, '*', 'id', `t${i}`))!);
    // Three delivered: the first two acknowledged, the third still pending; two never read.
    await redis.xreadgroup('GROUP', GROUP, 'c1', 'COUNT', 3, 'STREAMS', stream, '>');
    await redis.xack(stream, GROUP, ids[0]!, ids[1]!);
    const removed = Number(await runScript(redis, 'trim', [stream], [GROUP]));
    expect(removed).toBe(2);
    expect((await redis.xrange(stream, '-', '+')).map(([id]) => id)).toEqual(ids.slice(2));
  });

  it('removes nothing from a stream without the group, or no stream at all', async () => {
    expect(Number(await runScript(redis, 'trim', [keys.stream(q)], [GROUP]))).toBe(0);
    expect(await redis.exists(keys.stream(q))).toBe(0);
    await redis.xadd(keys.stream(q), '*', 'id', 't');
    expect(Number(await runScript(redis, 'trim', [keys.stream(q)], [GROUP]))).toBe(0);
    expect(await redis.xlen(keys.stream(q))).toBe(1);
  });
});

describe('the script loader', () => {
  it('refuses a call with the wrong number of keys before it reaches Redis', async () => {
    await redis.zadd(keys.scheduled('contracts'), 1, 'a\n');
    expect(() => runScript(redis, 'promote', [keys.scheduled('contracts')], [10, 10])).toThrow(
      'script promote takes 2 keys, got 1',
    );
    expect(await redis.zcard(keys.scheduled('contracts'))).toBe(1);
    expect(await redis.exists(keys.stream('contracts'))).toBe(0);
  });
});
