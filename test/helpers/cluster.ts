/**
 * A real Redis Cluster for a suite: three masters (and optionally one replica each), each a
 * `redis-server --cluster-enabled yes` on a free loopback port whose bus port (port + 10000)
 * is free too, joined with `redis-cli --cluster create`. Every process is stopped by its pid.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import calculateSlot from 'cluster-key-slot';
import { Cluster, Redis } from 'ioredis';
import { keys } from '../../src/store/keys.js';

const run = promisify(execFile);

export interface ClusterNode {
  port: number;
  pid: number;
  child: ChildProcess;
}

export interface RedisClusterHandle {
  nodes: ClusterNode[];
  /** `host:port,…` of every node, for REDIS_CLUSTER_NODES. */
  seeds: string;
  /** A queue name whose slot each master serves (index: master). */
  queuesPerMaster(prefix?: string): string[];
  /** A cluster client for assertions. Close it after. */
  client(): Cluster;
  /** Ports of the masters, in the order queuesPerMaster names them. */
  masters(): Promise<number[]>;
  stop(): Promise<void>;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const srv = net.createServer();
    srv.once('error', () => res(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => res(true)));
  });
}

async function freeClusterPort(taken: Set<number>): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((res, rej) => {
      const srv = net.createServer();
      srv.once('error', rej);
      srv.listen(0, '127.0.0.1', () => {
        const { port } = srv.address() as net.AddressInfo;
        srv.close(() => res(port));
      });
    });
    if (port + 10000 > 65535 || taken.has(port) || taken.has(port + 10000)) continue;
    if (await portFree(port + 10000)) {
      taken.add(port);
      taken.add(port + 10000);
      return port;
    }
  }
}

function startNode(port: number, dir: string): Promise<ClusterNode> {
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--protected-mode',
    'no',
    '--daemonize',
    'no',
    '--cluster-enabled',
    'yes',
    '--cluster-config-file',
    join(dir, `nodes-${port}.conf`),
    '--cluster-node-timeout',
    '2000',
    '--dir',
    dir,
    '--save',
    '',
    '--appendonly',
    'no',
    '--dbfilename',
    `dump-${port}.rdb`,
  ];
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  process.once('exit', () => child.kill('SIGKILL'));
  return new Promise((res, rej) => {
    let out = '';
    const onData = (b: Buffer) => {
      out += b.toString();
      if (out.includes('Ready to accept connections')) {
        child.stdout!.off('data', onData);
        child.stdout!.resume();
        child.stderr!.resume();
        res({ port, pid: child.pid!, child });
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => rej(new Error(`redis-server on ${port} exited with ${code}: ${out}`)));
  });
}

/** Resolves once every node says cluster_state:ok and they agree on who serves every slot. */
export async function waitClusterOk(ports: number[], timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const states = await Promise.all(
      ports.map(async (port) => {
        const r = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
        r.on('error', () => {});
        try {
          await r.connect();
          const info = (await r.cluster('INFO')) as string;
          const slots = JSON.stringify(await r.cluster('SLOTS'));
          return info.includes('cluster_state:ok') && info.includes('cluster_slots_ok:16384') ? slots : undefined;
        } catch {
          return undefined;
        } finally {
          r.disconnect();
        }
      }),
    );
    if (states.every((s) => s !== undefined && s === states[0])) return;
    if (Date.now() > until) throw new Error(`the cluster on ${ports.join(',')} did not become ok`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function startRedisCluster(options: { replicas?: 0 | 1 } = {}): Promise<RedisClusterHandle> {
  const replicas = options.replicas ?? 0;
  const dir = mkdtempSync(join(tmpdir(), 'taskwire-cluster-'));
  const taken = new Set<number>();
  const ports: number[] = [];
  for (let i = 0; i < 3 * (1 + replicas); i++) ports.push(await freeClusterPort(taken));
  const nodes: ClusterNode[] = [];
  const stop = async () => {
    await Promise.all(
      nodes.map(
        (n) =>
          new Promise<void>((res) => {
            if (n.child.exitCode !== null || n.child.signalCode !== null) return res();
            n.child.once('exit', () => res());
            process.kill(n.pid, 'SIGKILL');
          }),
      ),
    );
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (const port of ports) nodes.push(await startNode(port, dir));
    await run('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', String(replicas), '--cluster-yes']);
    await waitClusterOk(ports);
  } catch (err) {
    await stop();
    throw err;
  }
  const masters = async (): Promise<number[]> => {
    const r = new Redis(ports[0]!, '127.0.0.1', { maxRetriesPerRequest: 1 });
    try {
      const slots = (await r.cluster('SLOTS')) as unknown as [number, number, [string, number]][];
      return [...new Set(slots.sort((a, b) => a[0] - b[0]).map((s) => s[2][1]))];
    } finally {
      r.disconnect();
    }
  };
  const slotOwners = async () => {
    const r = new Redis(ports[0]!, '127.0.0.1', { maxRetriesPerRequest: 1 });
    try {
      return (await r.cluster('SLOTS')) as unknown as [number, number, [string, number]][];
    } finally {
      r.disconnect();
    }
  };
  const ranges = await slotOwners();
  const order = await masters();
  return {
    nodes,
    seeds: ports.map((p) => `127.0.0.1:${p}`).join(','),
    queuesPerMaster(prefix = 'q') {
      return order.map((port) => {
        for (let i = 0; ; i++) {
          const name = `${prefix}${port}-${i}`;
          const slot = calculateSlot(keys.stream(name));
          if (ranges.some(([from, to, [, p]]) => p === port && slot >= from && slot <= to)) return name;
        }
      });
    },
    client() {
      return new Cluster([{ host: '127.0.0.1', port: ports[0]! }], { redisOptions: { maxRetriesPerRequest: 1 } });
    },
    masters,
    stop,
  };
}
