/** A private redis-server for one suite, on a free loopback port, stopped by pid. */
import { Redis } from 'ioredis';
import { startRedisServer, type RedisServer } from '../../src/redisServer.js';

export type { RedisServer };

/** With `dataDir` it keeps its data (append-only file); stopped and started again with the
 * same `port` and `dataDir`, it is a Redis restart with data. */
export async function startRedis(options: { dataDir?: string; port?: number } = {}): Promise<RedisServer> {
  return startRedisServer(options);
}

/** A plain ioredis connection for assertions on what Redis holds. Close it after. */
export function redisClient(url: string): Redis {
  return new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 1 });
}
