/**
 * `taskwire dev` (what `npm start` runs): with REDIS_URL unset it starts a private
 * redis-server keeping its data under --data-dir, so a task's record survives a restart;
 * Ctrl-C (SIGINT) or SIGTERM stops it and its redis-server; a missing redis-server binary
 * and bad settings stop it at once with a message saying what to do.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createTaskwireClient, resultOf, TaskState } from '../src/client/index.js';
import { runTaskwire, startTaskwire, stopAll, type TaskwireProcess } from './helpers/processes.js';

const dirs: string[] = [];
const tempDir = (name: string) => {
  const dir = mkdtempSync(join(tmpdir(), `taskwire-${name}-`));
  dirs.push(dir);
  return dir;
};

afterAll(async () => {
  await stopAll();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** dev with no REDIS_URL, its data in `dataDir`; and the pid of the redis-server it started. */
async function startDev(dataDir: string): Promise<{ dev: TaskwireProcess; redisPid: number }> {
  const dev = await startTaskwire('dev', { env: { REDIS_URL: '' }, args: ['--data-dir', dataDir] });
  const m = /started a private redis-server \(pid (\d+)\)/.exec(dev.output());
  expect(m, dev.output()).not.toBeNull();
  return { dev, redisPid: Number(m![1]) };
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('taskwire dev', () => {
  it('keeps task records in its private Redis across a restart, and stops cleanly', async () => {
    const dataDir = tempDir('data');
    const first = await startDev(dataDir);
    expect(isRunning(first.redisPid)).toBe(true);
    let client = createTaskwireClient({ baseUrl: `http://127.0.0.1:${first.dev.port}` });
    const task = await client.start('hello', { args: ['Lucy'] });
    expect(await client.wait(task.id)).toBe('Hello Lucy!');

    // SIGTERM: a clean exit, and the redis-server it started is gone with it.
    expect(await first.dev.stop()).toBe(0);
    expect(isRunning(first.redisPid)).toBe(false);
    expect(readdirSync(dataDir).length).toBeGreaterThan(0);

    const second = await startDev(dataDir);
    expect(second.redisPid).not.toBe(first.redisPid);
    client = createTaskwireClient({ baseUrl: `http://127.0.0.1:${second.dev.port}` });
    const again = await client.status(task.id);
    expect(again.state).toBe(TaskState.SUCCESS);
    expect(resultOf(again)).toBe('Hello Lucy!');
    expect(again.version).toBe(3n);
    // And it still runs new work.
    const next = await client.start('hello', { args: ['Again'] });
    expect(await client.wait(next.id)).toBe('Hello Again!');

    // Ctrl-C is SIGINT: the same clean stop.
    second.dev.child.kill('SIGINT');
    expect(await second.dev.exited).toBe(0);
    expect(isRunning(second.redisPid)).toBe(false);
  });

  it('without redis-server on PATH, says how to install Redis and exits non-zero', async () => {
    const emptyBin = tempDir('bin');
    const dataDir = tempDir('nodata');
    // node itself is run by its absolute path; PATH holds no redis-server.
    const { code, stderr } = await runTaskwire(['dev', '--port', '0', '--data-dir', dataDir], { PATH: emptyBin, REDIS_URL: '' });
    expect(code).not.toBe(0);
    expect(stderr).toContain('redis-server was not found on PATH');
    expect(stderr).toMatch(/apt-get install -y redis-server/);
    expect(stderr).toMatch(/brew install redis/);
    expect(stderr).toMatch(/REDIS_URL/);
    expect(stderr).not.toMatch(/\n\s+at .*\.ts:\d+/); // a message, not a stack trace
  });

  it.each([
    [['dev'], { TASKWIRE_PORT: 'abc' }, /--port \/ TASKWIRE_PORT .*"abc"/],
    [['serve'], { TASKWIRE_PORT: '70000', REDIS_URL: 'redis://127.0.0.1:1' }, /--port \/ TASKWIRE_PORT .*"70000"/],
    [['dev', '--concurrency', '0'], {}, /--concurrency \/ TASKWIRE_CONCURRENCY .*"0"/],
    [['worker'], { TASKWIRE_CONCURRENCY: 'many', REDIS_URL: 'redis://127.0.0.1:1' }, /--concurrency \/ TASKWIRE_CONCURRENCY .*"many"/],
    [['worker', '--queues', 'a b'], { REDIS_URL: 'redis://127.0.0.1:1' }, /--queues \/ TASKWIRE_QUEUES .*"a b"/],
    [['serve'], { REDIS_URL: 'localhost:6379' }, /--redis \/ REDIS_URL .*"localhost:6379"/],
    [['dev', '--lease', 'soon'], {}, /--lease \/ TASKWIRE_LEASE .*"soon"/],
  ])('refuses %j with %j: exit 2 and a message naming the flag and the variable', async (args, env, message) => {
    const dataDir = tempDir('cfg');
    const { code, stdout, stderr } = await runTaskwire([...args, '--data-dir', dataDir], { REDIS_URL: '', ...env });
    expect(code).toBe(2);
    expect(stderr).toMatch(message);
    expect(stdout).toBe('');
    // Refused before anything started: no Redis data was written.
    expect(existsSync(dataDir) ? readdirSync(dataDir) : []).toEqual([]);
  });
});
