/**
 * The reclaimer against a private Redis: one look finds every message whose lease ran out,
 * wherever it sits in the pending list, and takes none that its worker still renews.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Reclaimer } from '../src/broker/reclaimer.js';
import { CONSUMER_GROUP, keys } from '../src/store/keys.js';
import { redisClient, startRedis, type RedisServer } from './helpers/redis.js';

const LEASE_MS = 20_000;
let server: RedisServer;
let redis: Redis;

beforeAll(async () => {
  server = await startRedis();
  redis = redisClient(server.url);
});
afterAll(async () => {
  redis?.disconnect();
  await server?.stop();
});

describe('reclaimer', () => {
  it('takes over an abandoned message behind many live ones in one look, and leaves the live ones', async () => {
    const queue = 'reclaim';
    const stream = keys.stream(queue);
    await redis.xgroup('CREATE', stream, CONSUMER_GROUP, '0', 'MKSTREAM');
    for (let i = 0; i < 200; i++) await redis.xadd(stream, '*', 'id', `live-${i}`, 'k', '');
    const deadId = await redis.xadd(stream, '*', 'id', 'abandoned', 'k', '');
    await redis.xreadgroup('GROUP', CONSUMER_GROUP, 'live-worker', 'COUNT', 200, 'STREAMS', stream, '>');
    await redis.xreadgroup('GROUP', CONSUMER_GROUP, 'dead-worker', 'COUNT', 1, 'STREAMS', stream, '>');
    // The dead worker last renewed its message two leases ago.
    await redis.xclaim(stream, CONSUMER_GROUP, 'dead-worker', 0, deadId!, 'IDLE', 2 * LEASE_MS, 'JUSTID');

    const taken = await new Reclaimer(redis, 'rescuer', LEASE_MS).reclaim(queue, 1);

    expect(taken.map((d) => d.id)).toEqual(['abandoned']);
    const owners = (await redis.xpending(stream, CONSUMER_GROUP)) as [number, string, string, [string, string][]];
    expect(Object.fromEntries(owners[3])).toEqual({ 'live-worker': '200', rescuer: '1' });
  });
});
