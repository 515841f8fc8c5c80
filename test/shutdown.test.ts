/**
 * Graceful shutdown: SIGTERM stops a worker taking new work, lets its running tasks finish
 * within the grace period (still renewing their leases, so nobody takes them over), hands
 * the rest back to the queue for another worker, and exits 0. A second signal forces it.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { TaskState } from '../src/client/index.js';
import { describe as show, Follow, isState } from './helpers/follow.js';
import type { TaskwireProcess } from './helpers/processes.js';
import { startStack, type Stack } from './helpers/stack.js';

// Generous bounds for a loaded machine (each test waits on events, never on a clock).
vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

let stack: Stack;
let started: TaskwireProcess[] = [];

beforeAll(async () => {
  stack = await startStack({ workers: 0, env: { TASKWIRE_LEASE: '2s' } });
});
afterEach(async () => {
  await Promise.all(started.map((p) => p.stop(5000)));
  started = [];
});
afterAll(async () => {
  await stack?.stop();
});

async function workers(queue: string, names: string[], grace: string): Promise<Record<string, TaskwireProcess>> {
  const procs = await Promise.all(
    names.map((name) =>
      stack.startWorker({
        args: ['-c', '1'],
        env: { TASKWIRE_QUEUES: queue, TASKWIRE_WORKER_NAME: name, TASKWIRE_SHUTDOWN_GRACE: grace },
      }),
    ),
  );
  started.push(...procs);
  return Object.fromEntries(names.map((n, i) => [n, procs[i]!]));
}

const other = (names: string[], name: string) => names.find((n) => n !== name)!;

describe('SIGTERM on a worker', () => {
  it('lets a running task finish within the grace period, longer than a lease, takes no new work, and exits 0', async () => {
    const queue = 'shut-finish';
    const names = ['finish-a', 'finish-b'];
    const procs = await workers(queue, names, '10s');
    // 1.5 leases: a worker that stopped renewing while it waits would lose it.
    const task = await stack.client.start('sleep', { args: [3], queue });
    const follow = new Follow(stack.client, task.id);
    const first = await follow.until(isState(TaskState.STARTED), 'the task started');
    const stopping = procs[first.worker]!;
    const exited = stopping.stop(30_000);
    await stopping.waitFor('shutting down');

    // New work goes to the other worker.
    const next = await stack.client.start('hello', { queue });
    const nextSeen = await new Follow(stack.client, next.id).end();
    expect(nextSeen.at(-1)!.worker).toBe(other(names, first.worker));

    const seen = await follow.end();
    expect(seen.map(show)).toEqual(['v1 PENDING#0', `v2 STARTED#1@${first.worker}`, `v3 SUCCESS#1@${first.worker}`]);
    expect(await exited).toBe(0);
  });

  it('hands a task still running after the grace period back to the queue; another worker runs it; exits 0', async () => {
    const queue = 'shut-handback';
    const names = ['handback-a', 'handback-b'];
    const procs = await workers(queue, names, '1s');
    // One attempt only: a hand-back is not a failed attempt, so it still runs again.
    const task = await stack.client.start('sleep', { args: [4], queue, maxAttempts: 1 });
    const follow = new Follow(stack.client, task.id);
    const first = await follow.until(isState(TaskState.STARTED), 'the task started');
    const survivor = other(names, first.worker);
    expect(await procs[first.worker]!.stop(30_000)).toBe(0);
    expect(procs[first.worker]!.output()).toContain('handing 1 unfinished task(s) back to the queue');

    const seen = await follow.end();
    expect(seen.map(show)).toEqual([
      'v1 PENDING#0',
      `v2 STARTED#1@${first.worker}`,
      'v3 PENDING#0',
      `v4 STARTED#1@${survivor}`,
      `v5 SUCCESS#1@${survivor}`,
    ]);
    // Handed back, not lost: nobody had to wait for its lease to run out.
    expect(procs[survivor]!.output()).not.toContain('taken over');
  });

  it('a second SIGTERM forces it: the running task is handed back at once', async () => {
    const queue = 'shut-force';
    const names = ['force-a', 'force-b'];
    const procs = await workers(queue, names, '60s');
    // Shorter than the grace: without the second signal it would finish where it is.
    const task = await stack.client.start('sleep', { args: [3], queue });
    const follow = new Follow(stack.client, task.id);
    const first = await follow.until(isState(TaskState.STARTED), 'the task started');
    const proc = procs[first.worker]!;
    proc.child.kill('SIGTERM');
    await proc.waitFor('shutting down');
    proc.child.kill('SIGTERM');
    // It exits by itself (0 or 1), not by the signal, after handing the task back.
    expect(typeof (await proc.exited)).toBe('number');

    const seen = await follow.end();
    expect(seen.map(show)).toEqual([
      'v1 PENDING#0',
      `v2 STARTED#1@${first.worker}`,
      'v3 PENDING#0',
      `v4 STARTED#1@${other(names, first.worker)}`,
      `v5 SUCCESS#1@${other(names, first.worker)}`,
    ]);
  });

  it('exits 0 at once when idle', async () => {
    const procs = await workers('shut-idle', ['idle-a'], '10s');
    expect(await procs['idle-a']!.stop(30_000)).toBe(0);
    expect(procs['idle-a']!.output()).toContain('worker idle-a stopped');
  });
});
