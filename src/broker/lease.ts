/**
 * Lease renewal: a worker keeps the messages of the tasks it runs fresh in the consumer
 * group (XCLAIM to itself, JUSTID: no redelivery count), so their idle time stays near
 * zero while it lives. Another worker reclaims only messages idle for a whole lease, which
 * means their worker stopped renewing: a long task on a live worker is never stolen.
 * The same round trip reads the tasks' cancel flags, so a cancel push that was missed is
 * seen on the next renewal.
 */
import type { ChainableCommander } from 'ioredis';
import { execBatched, type RedisClient } from '../redis.js';
import type { Delivery } from '../store/attemptStore.js';
import { CONSUMER_GROUP, keys } from '../store/keys.js';

export async function renewLeases(redis: RedisClient, consumer: string, held: readonly Delivery[]): Promise<Map<string, 'abort' | 'terminate'>> {
  const cancels = new Map<string, 'abort' | 'terminate'>();
  if (held.length === 0) return cancels;
  const byQueue = new Map<string, string[]>();
  for (const d of held) byQueue.set(d.queue, [...(byQueue.get(d.queue) ?? []), d.msgId]);
  const replies = await execBatched(redis, [
    ...[...byQueue].map(([queue, ids]) => ({
      key: keys.stream(queue),
      add: (p: ChainableCommander) => p.xclaim(keys.stream(queue), CONSUMER_GROUP, consumer, 0, ...ids, 'JUSTID'),
    })),
    ...held.map((d) => ({ key: keys.task(d.queue, d.id), add: (p: ChainableCommander) => p.hget(keys.task(d.queue, d.id), 'cancel') })),
  ]);
  held.forEach((d, i) => {
    const [, mode] = replies[byQueue.size + i] ?? [];
    if (mode === 'abort' || mode === 'terminate') cancels.set(d.id, mode);
  });
  return cancels;
}
