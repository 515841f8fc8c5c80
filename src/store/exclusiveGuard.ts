/**
 * The redlock guard around an exclusive key's check-and-start (the seed's pattern). The
 * lock serialises Starts of one key across API servers; its TTL bounds how long a dead
 * holder can block the key. Correctness does not rest on it alone: the enqueue script
 * re-checks the holder atomically.
 */
import type { Redis } from 'ioredis';
import Redlock, { ExecutionError } from 'redlock';
import { TaskwireError } from '../errors.js';

export const LOCK_TTL_MS = 5000;

export class ExclusiveGuard {
  private readonly redlock: Redlock;

  constructor(redis: Redis) {
    this.redlock = new Redlock([redis], { retryCount: 100, retryDelay: 50, retryJitter: 50, automaticExtensionThreshold: 1000 });
    this.redlock.on('error', () => {}); // a failed attempt is retried; the outcome is reported by run()
  }

  async run<T>(resource: string, fn: () => Promise<T>): Promise<T> {
    let lock;
    try {
      lock = await this.redlock.acquire([resource], LOCK_TTL_MS);
    } catch (err) {
      if (err instanceof ExecutionError) {
        throw new TaskwireError('unavailable', `could not take the lock for ${resource} in time; try again`);
      }
      throw err;
    }
    try {
      return await fn();
    } finally {
      await lock.release().catch(() => {}); // expired already: the TTL did its job
    }
  }
}
