/**
 * The redlock guard around an exclusive key's check-and-start (the seed's pattern). The
 * lock serialises Starts of one key across API servers; its TTL bounds how long a dead
 * holder can block the key. Correctness does not rest on it alone: the enqueue script
 * re-checks the holder atomically.
 */
import type { RedisClient } from '../redis.js';
import Redlock, { ExecutionError, type Lock } from 'redlock';
import { quote, TaskwireError } from '../errors.js';
import { keys } from './keys.js';

export const LOCK_TTL_MS = 5000;

const RETRY_DELAY_MS = 50;
const RETRY_JITTER_MS = 25;
/** A waiting Start must outlast a dead holder's lock: even if every retry waits its
 * shortest (delay - jitter), the retries span twice the TTL. */
const RETRY_COUNT = Math.ceil((2 * LOCK_TTL_MS) / (RETRY_DELAY_MS - RETRY_JITTER_MS));

export class ExclusiveGuard {
  private readonly redlock: Redlock;

  constructor(private readonly redis: RedisClient) {
    this.redlock = new Redlock([redis], {
      retryCount: RETRY_COUNT,
      retryDelay: RETRY_DELAY_MS,
      retryJitter: RETRY_JITTER_MS,
      automaticExtensionThreshold: 1000,
    });
    this.redlock.on('error', () => {}); // a failed attempt is retried; the outcome is reported by run()
  }

  /**
   * Run `fn` holding the lock on `resource`. `signal` is the caller's deadline or cancel:
   * the wait for the lock ends with it, and `fn` is not begun once it has fired, so nothing
   * is written for a caller that is gone.
   */
  async run<T>(resource: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    // Redlock retries a failed attempt for its whole budget (seconds): with Redis away that
    // would hold the Start that long, where every other call answers UNAVAILABLE at once.
    if (this.redis.status !== 'ready') {
      throw new TaskwireError('unavailable', 'Redis cannot be reached right now; try again shortly');
    }
    const lock = await this.acquire(resource, signal);
    try {
      throwIfGone(signal);
      return await fn();
    } finally {
      // One try: a lock that is gone (expired, taken over) makes the release script say no,
      // and retrying that would hold this Start's answer for the whole retry budget.
      await this.redlock.release(lock, { retryCount: 0 }).catch(() => {});
    }
  }

  /**
   * Create something that takes `key` on `queue` (a task, a workflow): under the key's lock,
   * read who holds it and call `create(holder)`, whose script re-checks that holder
   * atomically and answers undefined when it changed since (then look again, a few times).
   */
  create<T>(queue: string, key: string, create: (holder: string) => Promise<T | undefined>, signal?: AbortSignal): Promise<T> {
    return this.run(
      keys.exclusiveLock(queue, key),
      async () => {
        for (let tries = 0; tries < 5; tries++) {
          const holder = (await this.redis.get(keys.exclusive(queue, key))) ?? '';
          const result = await create(holder);
          if (result) return result;
        }
        throw new TaskwireError('unavailable', `exclusive key ${quote(key)} is changing hands too fast; try again`);
      },
      signal,
    );
  }

  /** One redlock attempt at a time, so the caller's signal is looked at between attempts. */
  private async acquire(resource: string, signal?: AbortSignal): Promise<Lock> {
    for (let attempt = 0; attempt <= RETRY_COUNT; attempt++) {
      throwIfGone(signal);
      try {
        return await this.redlock.acquire([resource], LOCK_TTL_MS, { retryCount: 0 });
      } catch (err) {
        if (!(err instanceof ExecutionError)) throw err;
      }
      await pause(RETRY_DELAY_MS + Math.round((Math.random() * 2 - 1) * RETRY_JITTER_MS), signal);
    }
    throw new TaskwireError('unavailable', `could not take the lock for ${resource} in time; try again`);
  }
}

/** The caller's deadline passed or it cancelled: stop before anything more is written. */
function throwIfGone(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    throw new TaskwireError('deadline', 'the call ended (deadline or cancel) before the exclusive key could be taken');
  }
}

function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
