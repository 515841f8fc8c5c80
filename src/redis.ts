/**
 * Redis connections. Each process opens a few, each with one job: commands, a blocking
 * reader (worker), a subscriber (pub/sub). Commands fail fast while Redis is away, so the
 * API answers UNAVAILABLE instead of hanging; ioredis reconnects by itself.
 *
 * The target is one Redis (a URL) or a Redis Cluster (its seed nodes); both give a client
 * with the same commands and scripts, so the rest of the code does not tell them apart.
 * A cluster client follows MOVED/ASK itself and waits out TRYAGAIN/CLUSTERDOWN for a
 * bounded time; past it the command fails like any other refusal.
 */
import calculateSlot from 'cluster-key-slot';
import { type ChainableCommander, Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { RedisClusterTarget } from './config.js';
import { installScripts } from './store/scripts.js';
import type { Logger } from './log.js';

/** A connection to one Redis or to a Redis Cluster. */
export type RedisClient = Redis | Cluster;

/** What to connect to: a `redis://`, `rediss://` or `unix://` URL, or a cluster's seed nodes. */
export type RedisTarget = string | RedisClusterTarget;

/** The target as a person reads it (in errors and logs), without its password. */
export function describeTarget(target: RedisTarget): string {
  if (typeof target === 'string') return target.replace(/\/\/([^@/]*)@/, '//***@');
  return `the Redis Cluster at ${target.nodes.map((n) => `${n.host}:${n.port}`).join(',')}`;
}

export interface ConnectOptions {
  /** Queue commands while disconnected (workers) instead of failing at once (API). */
  queueWhileDown?: boolean;
  /** For blocking reads and subscribers, which must not share a pipeline, and for a
   * connection whose user batches its commands itself (the worker's). */
  noPipelining?: boolean;
  /** A pub/sub connection: on a cluster it subscribes per shard (SSUBSCRIBE). */
  subscriber?: boolean;
}

const retryStrategy = (times: number) => Math.min(50 * 2 ** times, 2000);

/** How long a cluster command waits out a slot on the move or a failover before it fails. */
const CLUSTER_RETRY_DELAY_MS = 100;
const CLUSTER_MAX_REDIRECTIONS = 50;

export function connect(target: string, name: string, options?: ConnectOptions): Redis;
export function connect(target: RedisTarget, name: string, options?: ConnectOptions): RedisClient;
export function connect(target: RedisTarget, name: string, options: ConnectOptions = {}): RedisClient {
  const opts: RedisOptions = {
    connectionName: `taskwire:${name}`,
    lazyConnect: true,
    enableOfflineQueue: options.queueWhileDown ?? false,
    maxRetriesPerRequest: options.queueWhileDown ? null : 1,
    retryStrategy,
    enableAutoPipelining: !options.noPipelining,
  };
  const redis = typeof target === 'string' ? new Redis(target, opts) : connectCluster(target, opts, options);
  installScripts(redis);
  return redis;
}

/** How often a cluster subscriber reads the slot map (ms). */
const SUBSCRIBER_SLOTS_REFRESH_MS = 1000;

function connectCluster(target: RedisClusterTarget, opts: RedisOptions, options: ConnectOptions): Cluster {
  const clusterOpts: ClusterOptions = {
    lazyConnect: true,
    enableOfflineQueue: opts.enableOfflineQueue,
    // A pipeline on a cluster is not retried on TRYAGAIN (a slot moving): commands go alone.
    enableAutoPipelining: false,
    clusterRetryStrategy: retryStrategy,
    maxRedirections: CLUSTER_MAX_REDIRECTIONS,
    retryDelayOnMoved: 0,
    retryDelayOnTryAgain: CLUSTER_RETRY_DELAY_MS,
    retryDelayOnClusterDown: CLUSTER_RETRY_DELAY_MS,
    retryDelayOnFailover: CLUSTER_RETRY_DELAY_MS,
    // A subscriber on a cluster listens per shard (SSUBSCRIBE), one connection per master.
    shardedSubscribers: options.subscriber ?? false,
    // A subscriber issues no command that a MOVED could answer, so it would never hear that a
    // slot moved: it reads the slot map every second, and subscribes again where its
    // channels went ('subscribersReady', which the watch hub hears).
    ...(options.subscriber ? { slotsRefreshInterval: SUBSCRIBER_SLOTS_REFRESH_MS } : {}),
    redisOptions: {
      connectionName: opts.connectionName,
      maxRetriesPerRequest: opts.maxRetriesPerRequest,
      username: target.username,
      password: target.password,
      ...(target.tls ? { tls: {} } : {}),
    },
  };
  return new Cluster(target.nodes, clusterOpts);
}

/** Connect and wait until ready, with a clear error when Redis cannot be reached. */
export async function connectReady(target: string, name: string, options?: ConnectOptions): Promise<Redis>;
export async function connectReady(target: RedisTarget, name: string, options?: ConnectOptions): Promise<RedisClient>;
export async function connectReady(target: RedisTarget, name: string, options: ConnectOptions = {}): Promise<RedisClient> {
  const redis = connect(target, name, options);
  redis.on('error', () => {}); // reported by the caller's health tracking; ioredis retries
  try {
    await redis.connect();
  } catch (err) {
    redis.disconnect();
    const where = typeof target === 'string' ? `Redis at ${describeTarget(target)}` : describeTarget(target);
    throw new Error(`cannot connect to ${where}: ${(err as Error).message}`);
  }
  return redis;
}

/** One command of a batch: the key it names (its slot) and how to add it to a pipeline. */
export interface Batched {
  key: string;
  add: (pipe: ChainableCommander) => void;
}

/**
 * Send commands together: one pipeline on one Redis; on a cluster (where a pipeline must
 * stay within one slot) one pipeline per slot, all at once. Replies come in the commands'
 * order, as `[error, reply]` like a pipeline's.
 */
export async function execBatched(redis: RedisClient, commands: readonly Batched[]): Promise<[Error | null, unknown][]> {
  const bySlot = new Map<number, number[]>();
  for (const [i, c] of commands.entries()) {
    const slot = redis instanceof Cluster ? calculateSlot(c.key) : 0;
    bySlot.set(slot, [...(bySlot.get(slot) ?? []), i]);
  }
  const out: [Error | null, unknown][] = new Array(commands.length);
  await Promise.all(
    [...bySlot.values()].map(async (indexes) => {
      const pipe = redis.pipeline();
      for (const i of indexes) commands[i]!.add(pipe);
      const replies = (await pipe.exec()) ?? [];
      for (const [n, i] of indexes.entries()) out[i] = replies[n] ?? [new Error('no reply'), undefined];
    }),
  );
  return out;
}

/** Every node whose data the client writes: the one Redis, or each master of a cluster. */
export function masters(redis: RedisClient): Redis[] {
  return redis instanceof Cluster ? redis.nodes('master') : [redis];
}

/** Warn when Redis may evict task data (design brief: maxmemory-policy must be noeviction). */
export async function checkEvictionPolicy(redis: RedisClient, log: Logger): Promise<void> {
  for (const node of masters(redis)) {
    try {
      const reply = (await node.config('GET', 'maxmemory-policy')) as string[];
      const policy = reply[1];
      if (policy && policy !== 'noeviction') {
        const which = redis instanceof Cluster ? ` on ${node.options.host}:${node.options.port}` : '';
        log.warn(`Redis maxmemory-policy is "${policy}"${which}: Redis may evict queued tasks and results. Set it to "noeviction".`);
      }
    } catch {
      // CONFIG may be disabled (managed Redis); nothing to check then.
    }
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
    /enableOfflineQueue|Connection is closed|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|LOADING|Stream isn't writeable/i.test(err.message) ||
    // A cluster client that ran out of redirections or retries (a slot moving, a failover).
    /Too many Cluster redirections|Failed to refresh slots cache|None of startup nodes is available|Cluster isn't ready/.test(err.message)
  );
}
