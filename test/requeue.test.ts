/**
 * Handing an unclaimed message back to its queue against a private Redis: the message
 * leaves this worker's pending list and the task waits again at the tail of the stream,
 * where the next reader gets it.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toDeliveries } from '../src/broker/consumer.js';
import { requeueUnclaimed } from '../src/broker/requeue.js';
import { CONSUMER_GROUP, keys } from '../src/store/keys.js';
import { redisClient, startRedis, type RedisServer } from './helpers/redis.js';

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

type Reply = [string, [string, string[]][]][] | null;

describe('requeueUnclaimed', () => {
  it('acknowledges the message and queues its task again, with its exclusive key, for the next reader', async () => {
    const queue = 'requeue';
    const stream = keys.stream(queue);
    await redis.xgroup('CREATE', stream, CONSUMER_GROUP, '0', 'MKSTREAM');
    await redis.xadd(stream, '*', 'id', 'first', 'k', 'ek-1');
    await redis.xadd(stream, '*', 'id', 'second', 'k', '');
    const read = (await redis.xreadgroup('GROUP', CONSUMER_GROUP, 'stopping', 'COUNT', 1, 'STREAMS', stream, '>')) as Reply;
    const [d] = toDeliveries(queue, read![0]![1]);
    expect(d).toMatchObject({ id: 'first', ekey: 'ek-1' });

    await requeueUnclaimed(redis, d!);

    const summary = (await redis.xpending(stream, CONSUMER_GROUP)) as [number, ...unknown[]];
    expect(summary[0]).toBe(0);
    const next = (await redis.xreadgroup('GROUP', CONSUMER_GROUP, 'other', 'COUNT', 10, 'STREAMS', stream, '>')) as Reply;
    const again = toDeliveries(queue, next![0]![1]);
    expect(again.map((x) => [x.id, x.ekey])).toEqual([
      ['second', ''],
      ['first', 'ek-1'],
    ]);
    expect(again[1]!.msgId).not.toBe(d!.msgId);
  });
});
