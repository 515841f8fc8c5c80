/**
 * Handing a message back to its queue. A message read but never claimed (its record is
 * still PENDING) is acknowledged and added again at the tail of its stream in one step, so
 * the next reader of any worker gets it at once rather than after a lease, when the
 * reclaimer would. (Its old entry goes with the next trim.)
 */
import type { RedisClient } from '../redis.js';
import type { Delivery } from '../store/attemptStore.js';
import { CONSUMER_GROUP, keys } from '../store/keys.js';

/** Acknowledge `d` and queue its task again as a new message; resolves once both are done. */
export async function requeueUnclaimed(redis: RedisClient, d: Delivery): Promise<void> {
  const stream = keys.stream(d.queue);
  await redis.multi().xack(stream, CONSUMER_GROUP, d.msgId).xadd(stream, '*', 'id', d.id, 'k', d.ekey).exec();
}
