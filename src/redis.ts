/**
 * Redis connections. Each process opens a few, each with one job: commands, a blocking
 * reader (worker), a subscriber (pub/sub). Commands fail fast while Redis is away, so the
 * API answers UNAVAILABLE instead of hanging; ioredis reconnects by itself.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { installScripts } from './store/scripts.js';
import type { Logger } from './log.js';

export interface ConnectOptions {
  /** Queue commands while disconnected (workers) instead of failing at once (API). */
  queueWhileDown?: boolean;
  /** For blocking reads and subscribers, which must not share a pipeline, and for a
   * connection whose user batches its commands itself (the worker's). */
  noPipelining?: boolean;
}

export function connect(url: string, name: string, options: ConnectOptions = {}): Redis {
  const opts: RedisOptions = {
    connectionName: `taskwire:${name}`,
    lazyConnect: true,
    enableOfflineQueue: options.queueWhileDown ?? false,
    maxRetriesPerRequest: options.queueWhileDown ? null : 1,
    retryStrategy: (times) => Math.min(50 * 2 ** times, 2000),
    enableAutoPipelining: !options.noPipelining,
  };
  const redis = new Redis(url, opts);
  installScripts(redis);
  return redis;
}

/** Connect and wait until ready, with a clear error when Redis cannot be reached. */
export async function connectReady(url: string, name: string, options: ConnectOptions = {}): Promise<Redis> {
  const redis = connect(url, name, options);
  redis.on('error', () => {}); // reported by the caller's health tracking; ioredis retries
  try {
    await redis.connect();
  } catch (err) {
    redis.disconnect();
    throw new Error(`cannot connect to Redis at ${url}: ${(err as Error).message}`);
  }
  return redis;
}

/** Warn when Redis may evict task data (design brief: maxmemory-policy must be noeviction). */
export async function checkEvictionPolicy(redis: Redis, log: Logger): Promise<void> {
  try {
    const reply = (await redis.config('GET', 'maxmemory-policy')) as string[];
    const policy = reply[1];
    if (policy && policy !== 'noeviction') {
      log.warn(`Redis maxmemory-policy is "${policy}": Redis may evict queued tasks and results. Set it to "noeviction".`);
    }
  } catch {
    // CONFIG may be disabled (managed Redis); nothing to check then.
  }
}

/** True when an error means Redis could not be reached (as opposed to a bad command). */
/** Redis refuses writes because it is at `maxmemory` with the `noeviction` policy. */
export function isOutOfMemory(err: unknown): boolean {
  return err instanceof Error && err.name === 'ReplyError' && err.message.startsWith('OOM ');
}

/**
 * Redis refused a command for a reason that passes (out of memory, a replica not yet
 * promoted, a busy script, a slot moving): trying again later can succeed.
 */
export function isPassingRefusal(err: unknown): boolean {
  return (
    err instanceof Error &&
    err.name === 'ReplyError' &&
    /^(OOM|READONLY|BUSY|LOADING|TRYAGAIN|CLUSTERDOWN|MASTERDOWN|NOREPLICAS|MISCONF) /.test(err.message)
  );
}

export function isConnectionError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  return (
    err.name === 'MaxRetriesPerRequestError' ||
    /enableOfflineQueue|Connection is closed|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|LOADING|Stream isn't writeable/i.test(err.message)
  );
}
