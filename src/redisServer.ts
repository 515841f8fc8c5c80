/**
 * A private redis-server child process: `taskwire dev` uses one when REDIS_URL is unset,
 * and the tests start one per suite. Stopped by its pid, never by name.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import net from 'node:net';
import { resolve } from 'node:path';

export interface RedisServer {
  url: string;
  port: number;
  pid: number;
  stop(): Promise<void>;
}

export interface RedisServerOptions {
  /** Keep data here (append-only file), so tasks survive a restart. Unset: in memory only. */
  dataDir?: string;
  port?: number;
  binary?: string;
}

export const INSTALL_HINT =
  'redis-server was not found on PATH. Install Redis (Debian/Ubuntu: sudo apt-get install -y redis-server; ' +
  'macOS: brew install redis), or set REDIS_URL to a Redis you run yourself.';

export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = net.createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => res(port));
    });
  });
}

export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  for (let attempt = 0; ; attempt++) {
    const port = options.port ?? (await freePort());
    try {
      return await launch(port, options);
    } catch (err) {
      // Another process may have taken the free port in between; pick another.
      if (options.port !== undefined || attempt >= 3 || !/Address already in use/.test((err as Error).message)) throw err;
    }
  }
}

function launch(port: number, options: RedisServerOptions): Promise<RedisServer> {
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--protected-mode', 'no', '--daemonize', 'no', '--loglevel', 'notice'];
  if (options.dataDir) {
    const dir = resolve(options.dataDir);
    mkdirSync(dir, { recursive: true });
    args.push('--dir', dir, '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', '');
  } else {
    args.push('--save', '', '--appendonly', 'no');
  }
  const child = spawn(options.binary ?? 'redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((res, rej) => {
    let output = '';
    const onData = (b: Buffer) => {
      output += b.toString();
      if (output.includes('Ready to accept connections')) {
        cleanup();
        res(handle(child, port));
      }
    };
    const onError = (err: NodeJS.ErrnoException) => {
      cleanup();
      rej(err.code === 'ENOENT' ? new Error(INSTALL_HINT) : err);
    };
    const onExit = (code: number | null) => {
      cleanup();
      rej(new Error(`redis-server exited with code ${code} before it was ready: ${output.trim()}`));
    };
    const cleanup = () => {
      child.stdout!.off('data', onData);
      child.stderr!.off('data', onData);
      child.off('error', onError);
      child.off('exit', onExit);
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('error', onError);
    child.once('exit', onExit);
  });
}

function handle(child: ChildProcess, port: number): RedisServer {
  child.stdout!.resume();
  child.stderr!.resume();
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  // Never outlive the process that started it, however that process ends.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    pid: child.pid!,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
      process.off('exit', killOnExit);
    },
  };
}
