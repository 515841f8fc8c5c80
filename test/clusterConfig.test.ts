/**
 * The Redis Cluster settings: seeds read from REDIS_CLUSTER_NODES / --redis-cluster, checked
 * at start, and refused together with REDIS_URL.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';
import { runTaskwire } from './helpers/processes.js';

describe('cluster settings', () => {
  it('reads seed nodes from the variable, the flag winning', () => {
    const c = loadConfig({}, { REDIS_CLUSTER_NODES: '127.0.0.1:7000, 127.0.0.1:7001' });
    expect(c.redisCluster).toEqual({
      nodes: [
        { host: '127.0.0.1', port: 7000 },
        { host: '127.0.0.1', port: 7001 },
      ],
      tls: false,
      username: undefined,
      password: undefined,
    });
    expect(c.redisUrl).toBeUndefined();
    expect(loadConfig({ 'redis-cluster': 'h:1' }, { REDIS_CLUSTER_NODES: 'x:2' }).redisCluster?.nodes).toEqual([{ host: 'h', port: 1 }]);
  });

  it('takes TLS and credentials from the seeds written as URLs', () => {
    const c = loadConfig({}, { REDIS_CLUSTER_NODES: 'rediss://app:s%40cret@a:7000,rediss://app:s%40cret@b:7001' });
    expect(c.redisCluster).toMatchObject({ tls: true, username: 'app', password: 's@cret' });
  });

  it.each([
    ['127.0.0.1', 'not one'],
    ['127.0.0.1:0', 'not one'],
    ['127.0.0.1:70000', 'not one'],
    ['http://a:1', 'not one'],
    [',', 'at least one node'],
    ['redis://a:1,rediss://b:2', 'the same scheme'],
    ['redis://u:p@a:1,b:2', 'the same user and password'],
  ])('refuses %s with a message naming the setting', (value, message) => {
    expect(() => loadConfig({}, { REDIS_CLUSTER_NODES: value })).toThrow(ConfigError);
    expect(() => loadConfig({}, { REDIS_CLUSTER_NODES: value })).toThrow(/--redis-cluster \/ REDIS_CLUSTER_NODES/);
    expect(() => loadConfig({}, { REDIS_CLUSTER_NODES: value })).toThrow(message);
  });

  it('refuses REDIS_URL and REDIS_CLUSTER_NODES together', () => {
    expect(() => loadConfig({}, { REDIS_URL: 'redis://a:1', REDIS_CLUSTER_NODES: 'b:2' })).toThrow(/both set: give one/);
  });

  it('stops `taskwire serve` at start with that message', async () => {
    const r = await runTaskwire(['serve'], { REDIS_URL: 'redis://127.0.0.1:1', REDIS_CLUSTER_NODES: '127.0.0.1:2' });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('--redis / REDIS_URL and --redis-cluster / REDIS_CLUSTER_NODES are both set');
  });
});
