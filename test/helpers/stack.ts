/**
 * A whole taskwire for a suite: a private redis-server, API server(s) and worker(s) as
 * real processes, and clients for them. `stop()` stops everything, by pid.
 */
import { createTaskwireClient, type TaskwireClient } from '../../src/client/index.js';
import { startRedisCluster, type RedisClusterHandle } from './cluster.js';
import { startRedis, type RedisServer } from './redis.js';
import { startTaskwire, stopAll, type StartOptions, type TaskwireProcess } from './processes.js';

export interface Stack {
  /** On a cluster: `url` is unset, `port` is a seed's. */
  redis: RedisServer;
  /** Set when the stack runs on a Redis Cluster. */
  cluster: RedisClusterHandle | undefined;
  api: TaskwireProcess;
  workers: TaskwireProcess[];
  baseUrl: string;
  client: TaskwireClient;
  startWorker(options?: StartOptions): Promise<TaskwireProcess>;
  startApi(options?: StartOptions): Promise<TaskwireProcess>;
  stop(): Promise<void>;
}

export interface StackOptions {
  workers?: number;
  /** Extra env for every process (e.g. TASKWIRE_LEASE). */
  env?: Record<string, string>;
  workerArgs?: string[];
  /** Run on a Redis Cluster started for the stack instead of one redis-server. */
  cluster?: { replicas?: 0 | 1 };
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const cluster = options.cluster ? await startRedisCluster(options.cluster) : undefined;
  const redis: RedisServer = cluster
    ? { url: '', port: cluster.nodes[0]!.port, pid: cluster.nodes[0]!.pid, stop: () => cluster.stop() }
    : await startRedis();
  const target: Record<string, string> = cluster ? { REDIS_URL: '', REDIS_CLUSTER_NODES: cluster.seeds } : {};
  const env = { TASKWIRE_WATCH_HEARTBEAT: '1s', ...target, ...options.env };
  const redisUrl = cluster ? undefined : redis.url;
  const startApi = (o: StartOptions = {}) => startTaskwire('serve', { redisUrl, ...o, env: { ...env, ...o.env } });
  const startWorker = (o: StartOptions = {}) => startTaskwire('worker', { redisUrl, args: options.workerArgs, ...o, env: { ...env, ...o.env } });
  try {
    const api = await startApi();
    const workers = await Promise.all(Array.from({ length: options.workers ?? 1 }, () => startWorker()));
    const baseUrl = `http://127.0.0.1:${api.port}`;
    return {
      redis,
      cluster,
      api,
      workers,
      baseUrl,
      client: createTaskwireClient({ baseUrl }),
      startWorker,
      startApi,
      async stop() {
        await stopAll();
        await redis.stop();
      },
    };
  } catch (err) {
    await stopAll();
    await redis.stop();
    throw err;
  }
}
