/**
 * `taskwire serve`, `taskwire worker` and `taskwire dev`. Each loads only the code of the
 * processes it runs: a worker never loads the API server (Connect, HTTP/2, reflection…),
 * which keeps ~11 MB off every worker process.
 */
import type { Beat } from '../beat/beat.js';
import type { Config } from '../config.js';
import { createLogger } from '../log.js';
import { startRedisServer, type RedisServer } from '../redisServer.js';
import type { ApiServer } from '../server/index.js';
import type { Worker } from '../worker/runtime.js';
import { onShutdown } from './signals.js';

const startApiServer: typeof import('../server/index.js').startApiServer = async (...args) =>
  (await import('../server/index.js')).startApiServer(...args);
const startWorker: typeof Worker.start = async (...args) => (await import('../worker/runtime.js')).Worker.start(...args);
/** Every process ticks the periodic schedules (no leader): see src/beat/ticker.ts. */
const startBeat: typeof import('../beat/beat.js').startBeat = async (...args) => (await import('../beat/beat.js')).startBeat(...args);
const backgroundBeat = async (...args: Parameters<typeof import('../beat/beat.js').backgroundBeat>) =>
  (await import('../beat/beat.js')).backgroundBeat(...args);

/** How long a shutdown may wait on Redis for its last writes (hand-backs, closing
 * connections) past the grace period before it stops by force. */
const WRITES_BOUND_MS = 10_000;

function requireRedis(config: Config, command: string): void {
  if (!config.redisUrl && !config.redisCluster) {
    throw new Error(
      `taskwire ${command} needs Redis: set REDIS_URL (e.g. redis://127.0.0.1:6379) or pass --redis, or REDIS_CLUSTER_NODES / --redis-cluster for a Redis Cluster`,
    );
  }
}

export async function serve(config: Config): Promise<void> {
  requireRedis(config, 'serve');
  const api = await startApiServer(config, createLogger('api', config.log));
  // Signals are handled from the ready line on, while the ticker starts.
  const beat = backgroundBeat(config, createLogger('api', config.log), { declare: false });
  const stop = async () => {
    await (await beat).stop();
    await api.stop();
  };
  onShutdown(stop, stop, WRITES_BOUND_MS);
  try {
    await (await beat).started;
  } catch (err) {
    await api.stop();
    throw err;
  }
}

export async function worker(config: Config): Promise<void> {
  requireRedis(config, 'worker');
  // Signals are handled from the start: the ready line may be read (and a SIGTERM sent) the
  // moment it is written.
  const starting = startWorker(config, createLogger('worker', config.log));
  let beat: ReturnType<typeof backgroundBeat> | undefined;
  const stop = async (grace: number) => {
    await (await beat)?.stop();
    await (await starting).stop(grace);
  };
  onShutdown(
    () => stop(config.shutdownGraceMs),
    () => stop(0),
    config.shutdownGraceMs + WRITES_BOUND_MS,
  );
  await starting;
  beat = backgroundBeat(config, createLogger('worker', config.log), { declare: true });
  try {
    await (await beat).started;
  } catch (err) {
    // A declared schedule the store refuses: the worker does not run without it.
    await (await starting).stop(0);
    throw err;
  }
}

/** API server + one worker; a private redis-server under the data dir when neither REDIS_URL nor REDIS_CLUSTER_NODES is set. */
export async function dev(config: Config): Promise<void> {
  const log = createLogger('dev', config.log);
  let redis: RedisServer | undefined;
  let api: ApiServer | undefined;
  let w: Worker | undefined;
  let beat: Beat | undefined;
  const stopAll = async (grace: number) => {
    await beat?.stop();
    await w?.stop(grace);
    await api?.stop();
    await redis?.stop();
  };
  try {
    if (!config.redisUrl && !config.redisCluster) {
      redis = await startRedisServer({ dataDir: config.dataDir });
      log.info(`started a private redis-server (pid ${redis.pid}) at ${redis.url}, data in ${config.dataDir}/`);
      config = { ...config, redisUrl: redis.url };
    }
    api = await startApiServer(config, createLogger('api', config.log));
    w = await startWorker(config, createLogger('worker', config.log));
    beat = await startBeat(config, createLogger('dev', config.log), { declare: true });
  } catch (err) {
    await stopAll(0);
    throw err;
  }
  log.info(`ready: try  npx taskwire start hello --args '["Lucy"]'  or grpcurl -plaintext localhost:${api.port} list`);
  onShutdown(
    () => stopAll(config.shutdownGraceMs),
    () => stopAll(0),
    config.shutdownGraceMs + WRITES_BOUND_MS,
  );
}
