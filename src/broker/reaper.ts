/**
 * Forgetting stopped workers. Each worker process reads its queues under a name of its own,
 * so a queue's consumer group would list every worker that ever ran (XINFO CONSUMERS, and
 * Redis memory, growing with every deploy or crash). A worker removes, about once a lease,
 * the consumers that hold no message and were not heard from for three leases (reap-1.lua):
 * a live worker reads or renews far more often than that, and a dead one's messages have
 * been taken over by then.
 */
import type { RedisClient } from '../redis.js';
import { CONSUMER_GROUP, keys } from '../store/keys.js';
import { runScript } from '../store/scripts.js';

/** Remove the idle, empty consumers of `queue`'s group other than `self`; returns their names. */
export async function reapConsumers(redis: RedisClient, queue: string, idleMs: number, self: string): Promise<string[]> {
  return (await runScript(redis, 'reap', [keys.stream(queue)], [CONSUMER_GROUP, idleMs, self])) as string[];
}
