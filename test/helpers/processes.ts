/**
 * taskwire processes for tests: the real CLI as a child process (the build in dist/ when it
 * is fresh, else the source through tsx: bin/entry.js), waited on until it says it is
 * ready, stopped by pid. Every process started here is tracked, so `stopAll` can stop what
 * a suite left running.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { entryArgs } from '../../bin/entry.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** Decided once per suite: a build made while a suite runs is not picked up half-way. */
const MAIN = entryArgs();

const live = new Set<TaskwireProcess>();

export interface TaskwireProcess {
  pid: number;
  child: ChildProcess;
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string;
  /** The port an API server listens on (serve/dev). */
  port: number;
  /** Resolves with the exit code (or signal name) when the process ends. */
  exited: Promise<number | string>;
  /** SIGTERM (graceful), then SIGKILL after `forceAfterMs`. */
  stop(forceAfterMs?: number): Promise<number | string>;
  /** SIGKILL now: a crash. */
  kill(): Promise<number | string>;
  /** Resolves when the output contains `text` (or matches). */
  waitFor(text: string | RegExp, timeoutMs?: number): Promise<void>;
}

export interface StartOptions {
  redisUrl?: string;
  env?: Record<string, string>;
  args?: string[];
  /** Output that means the process is ready (default: per command). */
  readyWhen?: RegExp;
}

const READY: Record<string, RegExp> = {
  serve: /API listening on [^\s]+:(\d+)/,
  dev: /"role":"dev"[^\n]*"msg":"ready|\[dev\] ready/,
  worker: /worker \S+ runs queues/,
};

/** Run a taskwire command (serve, worker, dev, or a client command) as a child process. */
export async function startTaskwire(command: string, options: StartOptions = {}): Promise<TaskwireProcess> {
  const args = [...MAIN, command, ...(options.args ?? [])];
  if ((command === 'serve' || command === 'dev') && !options.args?.includes('--port')) args.push('--port', '0');
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: {
      ...process.env,
      ...(options.redisUrl ? { REDIS_URL: options.redisUrl } : {}),
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const watchers = new Set<() => void>();
  const onData = (b: Buffer) => {
    out += b.toString();
    for (const w of watchers) w();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(proc);
      for (const w of watchers) w();
      resolve(code ?? signal ?? -1);
    });
  });

  const waitFor = (text: string | RegExp, timeoutMs = 20_000) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        const hit = typeof text === 'string' ? out.includes(text) : text.test(out);
        if (hit) {
          done();
          resolve();
        } else if (child.exitCode !== null || child.signalCode !== null) {
          done();
          reject(new Error(`taskwire ${command} exited before printing ${text}:\n${out}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`taskwire ${command} did not print ${text} within ${timeoutMs}ms:\n${out}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        watchers.delete(check);
      };
      watchers.add(check);
      check();
    });

  const proc: TaskwireProcess = {
    pid: child.pid!,
    child,
    output: () => out,
    port: 0,
    exited,
    waitFor,
    async stop(forceAfterMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), forceAfterMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      return exited;
    },
  };
  live.add(proc);

  const ready = options.readyWhen ?? READY[command];
  if (ready) {
    try {
      await waitFor(ready);
    } catch (err) {
      await proc.kill();
      throw err;
    }
    const port = /API listening on [^\s]+:(\d+)/.exec(out);
    if (port) proc.port = Number(port[1]);
  }
  return proc;
}

/** Run a client command to completion: its exit code and output. */
export async function runTaskwire(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [...MAIN, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const code = await new Promise<number | string>((r) => child.once('exit', (c, s) => r(c ?? s ?? -1)));
  return { code, stdout, stderr };
}

/** Stop every process a suite started and still runs (afterAll). */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((p) => p.stop(5000)));
}
