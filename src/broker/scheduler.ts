/**
 * Moves tasks whose countdown or retry backoff has run out from the scheduled set onto
 * their queue stream.
 */
import type { RedisClient } from '../redis.js';
import { keys } from '../store/keys.js';
import { runScript } from '../store/scripts.js';

/** Promote due tasks of one queue; returns the due time (ms) of the next one, or undefined. */
export async function promoteDue(redis: RedisClient, queue: string, now = Date.now(), batch = 500): Promise<number | undefined> {
  for (;;) {
    const [moved, next] = (await runScript(redis, 'promote', [keys.scheduled(queue), keys.stream(queue)], [now, batch])) as [number, string];
    if (moved < batch) return next === '-1' ? undefined : Number(next);
  }
}
