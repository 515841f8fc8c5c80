/**
 * The set of queues in use ({@link keys.queues}), so that a WatchEvents of every queue knows
 * which change channels to subscribe to. A process adds a queue before it first creates a
 * task there and announces it on {@link channels.queueAdded}: a watcher subscribed to that
 * channel before it read the set either found the queue in the set or hears the
 * announcement, and subscribes to the queue's channel before its first task is created or
 * reads what was created meanwhile.
 */
import type { RedisClient } from '../redis.js';
import { channels, keys } from './keys.js';

/** Per connection: the queues this process has added and announced (or is adding). */
const noted = new WeakMap<RedisClient, Map<string, Promise<void>>>();

/**
 * Add `queue` to the set and announce it, once per process (the first time only; a failure
 * is tried again on the next call). Announced even when the set had it: a process that
 * failed between the two writes must not leave a queue added but never announced.
 */
export function noteQueue(redis: RedisClient, queue: string): Promise<void> {
  let mine = noted.get(redis);
  if (!mine) noted.set(redis, (mine = new Map()));
  const known = mine.get(queue);
  if (known) return known;
  const adding = (async () => {
    await redis.sadd(keys.queues(), queue);
    await redis.spublish(channels.queueAdded(), queue);
  })();
  mine.set(queue, adding);
  adding.catch(() => mine.delete(queue));
  return adding;
}

/** Every queue in the set. */
export function knownQueues(redis: RedisClient): Promise<string[]> {
  return redis.smembers(keys.queues());
}
