/**
 * Child processes of a benchmark: each runs one role (worker, API server, producer),
 * is watched through its output, measured through /proc, and stopped by its pid.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface Proc {
  pid: number;
  name: string;
  output(): string;
  /** Resolves with the first match of `re` in the output (waits for it). */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /** Peak resident set size so far (VmHWM), in bytes. */
  peakRss(): number;
  /** Resident set size now (VmRSS), in bytes. */
  rss(): number;
  /** CPU time used so far (user + system), in ms. */
  cpu(): number;
  /** The JSON a bench child prints as `RESULT {...}` before it exits. */
  result<T>(timeoutMs?: number): Promise<T>;
  exited: Promise<number | string>;
  /** SIGTERM, then SIGKILL after `forceAfterMs`. */
  stop(forceAfterMs?: number): Promise<void>;
  /** Write a line to the child's standard input. */
  send(line: string): void;
}

const live = new Set<Proc>();

function procStatus(pid: number, field: string): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** CPU time a process has used so far (user + system), in ms, from /proc/<pid>/stat. */
export function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start after its closing ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 of the whole line, in clock ticks (100 per s on Linux).
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
  } catch {
    return Number.NaN;
  }
}

const CLOCK_TICKS = 100;

export function spawnNode(name: string, args: string[], env: Record<string, string> = {}): Proc {
  const child: ChildProcess = spawn(process.execPath, args, {
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  const waiters = new Set<() => void>();
  const onData = (b: Buffer) => {
    out += b.toString();
    if (out.length > 1 << 20) out = out.slice(-(1 << 19));
    for (const w of [...waiters]) w();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | string>((resolve) =>
    child.once('exit', (code, signal) => {
      live.delete(proc);
      for (const w of [...waiters]) w();
      resolve(code ?? signal ?? -1);
    }),
  );
  const gone = () => child.exitCode !== null || child.signalCode !== null;

  const waitFor = (re: RegExp, timeoutMs = 60_000) =>
    new Promise<RegExpExecArray>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`${name} did not print ${re} within ${timeoutMs}ms:\n${out.slice(-3000)}`));
      }, timeoutMs);
      const check = () => {
        const m = re.exec(out);
        if (m || gone()) {
          clearTimeout(timer);
          waiters.delete(check);
          if (m) resolve(m);
          else reject(new Error(`${name} exited before printing ${re}:\n${out.slice(-3000)}`));
        }
      };
      waiters.add(check);
      check();
    });

  const proc: Proc = {
    pid: child.pid!,
    name,
    output: () => out,
    waitFor,
    peakRss: () => procStatus(child.pid!, 'VmHWM'),
    rss: () => procStatus(child.pid!, 'VmRSS'),
    cpu: () => cpuMs(child.pid!),
    async result<T>(timeoutMs = 120_000) {
      const m = await waitFor(/^RESULT (.*)$/m, timeoutMs);
      return JSON.parse(m[1]!) as T;
    },
    exited,
    send: (line) => void child.stdin!.write(`${line}\n`),
    async stop(forceAfterMs = 10_000) {
      if (gone()) return void (await exited);
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), forceAfterMs);
      await exited;
      clearTimeout(timer);
    },
  };
  live.add(proc);
  return proc;
}

/** Stop every child still running (on the way out, also after a failure). */
export async function stopAllProcs(): Promise<void> {
  await Promise.all([...live].map((p) => p.stop(3000)));
}

// The child's side of the same protocol: its parameters come as JSON in argv[2], its result
// goes out as one `RESULT {json}` line.

export function childParams<P>(): P {
  return JSON.parse(process.argv[2]!) as P;
}

export function printResult(r: unknown): void {
  process.stdout.write(`RESULT ${JSON.stringify(r)}\n`);
}
