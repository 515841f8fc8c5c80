/**
 * The seed's flow from the shell (issue 3): `taskwire start|status|watch|cancel` as child
 * processes against a live server, judged by what they print and their exit codes
 * (watch: 0 SUCCESS, 1 FAILURE, 3 REVOKED; a refused call: 2).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runTaskwire, startTaskwire } from './helpers/processes.js';
import { startStack, type Stack } from './helpers/stack.js';

let stack: Stack;
let env: Record<string, string>;

beforeAll(async () => {
  stack = await startStack({ env: { TASKWIRE_LEASE: '2s' } });
  env = { TASKWIRE_SERVER: stack.baseUrl };
});
afterAll(async () => {
  await stack?.stop();
});

const taskwire = (...args: string[]) => runTaskwire(args, env);

/** A printed record line: `<id>  <name>  <STATE>  v<version>  …`. */
interface Line {
  id: string;
  name: string;
  state: string;
  version: number;
  rest: string;
}

function lines(stdout: string): Line[] {
  return stdout
    .trim()
    .split('\n')
    .filter((l) => / {2}v\d+/.test(l))
    .map((l) => {
      const m = /^(\S+) {2}(\S+) {2}([A-Z]+) {2}v(\d+)(.*)$/.exec(l);
      if (!m) throw new Error(`not a record line: ${l}`);
      return { id: m[1]!, name: m[2]!, state: m[3]!, version: Number(m[4]), rest: m[5]! };
    });
}

// Each command is a fresh node process (about 1.5s of CPU to start): generous timeouts.
describe('taskwire start, status and watch', { timeout: 60_000 }, () => {
  it('starts hello with args, prints it PENDING, and shows the latest task without an id', async () => {
    const start = await taskwire('start', 'hello', '--args', '["Lucy"]');
    expect(start.code).toBe(0);
    const [pending] = lines(start.stdout);
    expect(pending).toMatchObject({ name: 'hello', state: 'PENDING', version: 1 });
    expect(start.stderr).not.toMatch(/hint/); // a worker reads the default queue

    const watch = await taskwire('watch');
    expect(watch.code).toBe(0);
    const last = lines(watch.stdout).at(-1)!;
    expect(last).toMatchObject({ id: pending!.id, state: 'SUCCESS' });
    expect(last.rest).toContain('result "Hello Lucy!"');

    const status = await taskwire('status');
    expect(status.code).toBe(0);
    expect(lines(status.stdout)).toEqual([last]);
  });

  it('watch prints one line per change and exits 1 on FAILURE', async () => {
    const failed = await taskwire('start', 'fail', '--args', '["boom"]', '--wait');
    expect(failed.code).toBe(1);
    const seen = lines(failed.stdout);
    expect(seen.map((l) => `${l.state} v${l.version}`)).toEqual(['PENDING v1', 'STARTED v2', 'FAILURE v3']);
    expect(seen.at(-1)!.rest).toContain('Error: boom');
    // Watching the finished task (the latest) prints its final record and exits the same way.
    const again = await taskwire('watch');
    expect(again.code).toBe(1);
    expect(lines(again.stdout)).toEqual([seen.at(-1)]);
  });

  it('hints, on stderr, that no worker has read the queue a task went to', async () => {
    const start = await taskwire('start', 'hello', '--queue', 'nobody-reads');
    expect(start.code).toBe(0);
    expect(lines(start.stdout)[0]).toMatchObject({ state: 'PENDING' });
    expect(start.stderr).toMatch(
      /hint: no worker has read queue "nobody-reads" yet, so the task waits until one does: start one with `taskwire worker --queues nobody-reads`/,
    );
  });

  it('says NOT_FOUND (exit 2) when no task was ever started', async () => {
    const res = await taskwire('status', '--queue', 'untouched');
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/NotFound: no task has been started on queue "untouched" yet/);
  });
});

describe('taskwire start --exclusive and cancel', { timeout: 60_000 }, () => {
  it('refuses a second exclusive start with exit 2 and the running id; cancel stops it; watch exits 3', async () => {
    const first = await taskwire('start', 'sleep', '--args', '[30]', '--exclusive', 'nightly');
    expect(first.code).toBe(0);
    const running = lines(first.stdout)[0]!;

    const second = await taskwire('start', 'sleep', '--args', '[30]', '--exclusive', 'nightly');
    expect(second.code).toBe(2);
    expect(second.stdout).toBe('');
    expect(second.stderr).toContain(`AlreadyExists: a task with exclusive key "nightly" is already running (task ${running.id})`);
    expect(second.stderr).toContain(`running_task_id: ${running.id}`);

    const cancel = await taskwire('cancel', '--exclusive', 'nightly', '--reason', 'not tonight');
    expect(cancel.code).toBe(0);
    expect(cancel.stdout).toMatch(/^the task (had not started|is running)/);
    expect(lines(cancel.stdout)[0]?.id).toBe(running.id);
    const watch = await taskwire('watch', '--exclusive', 'nightly');
    expect(watch.code).toBe(3);
    const end = lines(watch.stdout).at(-1)!;
    expect(end).toMatchObject({ id: running.id, state: 'REVOKED' });
    expect(end.rest).toContain('TaskRevokedError: not tonight');
  });

  it('cancel --terminate stops a spinning task that a watch follows; the watch exits 3', async () => {
    const start = await taskwire('start', 'spin', '--args', '[30]');
    const spin = lines(start.stdout)[0]!;
    const watch = await startTaskwire('watch', { args: [spin.id], env, readyWhen: /STARTED/ });
    const cancel = await taskwire('cancel', '--terminate');
    expect(cancel.code).toBe(0);
    expect(cancel.stdout).toMatch(/^the task is running; its worker has been told to stop it\n/);
    expect(lines(cancel.stdout)[0]).toMatchObject({ id: spin.id, state: 'STARTED' });
    expect(lines(cancel.stdout)[0]!.rest).toContain('cancel requested');

    expect(await watch.exited).toBe(3);
    const seen = lines(watch.output());
    // One line per change, none skipped or repeated.
    const versions = seen.map((l) => l.version);
    expect(versions).toEqual(versions.map((_, i) => versions[0]! + i));
    expect(seen.at(-1)).toMatchObject({ id: spin.id, state: 'REVOKED' });
    expect(seen.at(-1)!.rest).toMatch(/TaskRevokedError: cancelled by request \(terminated by force\)/);
  });
});

describe('taskwire serve and dev: where they listen', { timeout: 60_000 }, () => {
  it.each(['serve', 'dev'])('%s on a port in use exits non-zero, saying so, instead of hanging', async (command) => {
    const port = String(stack.api.port);
    const proc = await startTaskwire(command, {
      redisUrl: stack.redis.url,
      args: ['--port', port],
      env: { TASKWIRE_LOG_FORMAT: 'text' },
      readyWhen: /taskwire: /,
    });
    try {
      const gone = await Promise.race([proc.exited, new Promise((r) => setTimeout(() => r('still running'), 20_000))]);
      expect(gone).toBe(1);
      expect(proc.output()).toContain(`taskwire: cannot listen on 127.0.0.1:${port}: the port is in use`);
      expect(proc.output()).toContain('--port / TASKWIRE_PORT');
    } finally {
      await proc.kill();
    }
  });

  it('serve listens on 127.0.0.1 by default, as --help says, and on TASKWIRE_HOST when set', async () => {
    const help = await runTaskwire(['--help']);
    expect(help.stdout).toMatch(/--host \/ TASKWIRE_HOST +127\.0\.0\.1/);

    const byDefault = await startTaskwire('serve', { redisUrl: stack.redis.url });
    expect(byDefault.output()).toContain(`API listening on 127.0.0.1:${byDefault.port}`);
    expect(await byDefault.stop()).toBe(0);

    const fromEnv = await startTaskwire('serve', { redisUrl: stack.redis.url, env: { TASKWIRE_HOST: 'localhost' } });
    expect(fromEnv.output()).toContain(`API listening on localhost:${fromEnv.port}`);
    expect(await fromEnv.stop()).toBe(0);
  });
});
