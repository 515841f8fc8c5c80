/**
 * A whole taskwire for a suite: a private redis-server, API server(s) and worker(s) as
 * real processes, and clients for them. `stop()` stops everything, by pid.
 */
import { createTaskwireClient, type TaskwireClient } from '../../src/client/index.js';
import { startRedis, type RedisServer } from './redis.js';
import { startTaskwire, stopAll, type StartOptions, type TaskwireProcess } from './processes.js';

export interface Stack {
  redis: RedisServer;
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
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const redis = await startRedis();
  const env = { TASKWIRE_WATCH_HEARTBEAT: '1s', ...options.env };
  const startApi = (o: StartOptions = {}) => startTaskwire('serve', { redisUrl: redis.url, ...o, env: { ...env, ...o.env } });
  const startWorker = (o: StartOptions = {}) =>
    startTaskwire('worker', { redisUrl: redis.url, args: options.workerArgs, ...o, env: { ...env, ...o.env } });
  try {
    const api = await startApi();
    const workers = await Promise.all(Array.from({ length: options.workers ?? 1 }, () => startWorker()));
    const baseUrl = `http://127.0.0.1:${api.port}`;
    return {
      redis,
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
