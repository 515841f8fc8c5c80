/**
 * Trimming the queue streams. Acknowledging a message leaves its entry in the stream (one
 * XDEL per task made Redis rescan the deleted entries at the head of the stream every
 * time); a worker that acknowledged anything trims its queues about once a second
 * (src/worker/streamTrimmer.ts), removing in one step every entry the consumer group is
 * done with (trim-1.lua). So the length of a queue stream is no longer the number of tasks
 * waiting: that is the group's `lag` (XINFO GROUPS, Redis 7), see queueBacklog().
 */
import type { RedisClient } from '../redis.js';
import { CONSUMER_GROUP, keys } from '../store/keys.js';
import { runScript } from '../store/scripts.js';

/** Remove the entries of `queue`'s stream that every consumer is done with; returns how many. */
export async function trimQueue(redis: RedisClient, queue: string): Promise<number> {
  return Number(await runScript(redis, 'trim', [keys.stream(queue)], [CONSUMER_GROUP]));
}
