/**
 * Periodic tasks over real gRPC and a real Redis, with several API servers and workers all
 * ticking: each tick starts exactly one run whichever process dies, DeleteSchedule stops a
 * schedule at once, cron with seconds, overlap skip and allow, pause and resume.
 */
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createTaskwireClient, TaskState } from '../src/client/index.js';
import { eventually, expectEachTickOnce, runsAtLeast, runsOf } from './helpers/periodic.js';
import { refused } from './helpers/refused.js';
import { startStack, type Stack } from './helpers/stack.js';

vi.setConfig({ testTimeout: 90_000, hookTimeout: 60_000 });

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ workers: 2, workerArgs: ['-c', '4'], env: { TASKWIRE_LEASE: '2s' } });
});
afterAll(async () => {
  await stack?.stop();
});

describe('exactly once per tick', () => {
  it('every 1s with 2 API servers and 2 workers, a worker and an API server SIGKILLed: each tick once, none missing, none after delete', async () => {
    const api2 = await stack.startApi();
    const c = stack.client;
    const created = await c.createSchedule('every-second', 'hello', { everyMs: 1000, args: ['tick'], overlap: 'allow' });
    expect(created.id).toBe('every-second');
    expect(created.nextRunAt).toBeDefined();

    await runsAtLeast(c, 'every-second', 3);
    // Crashes mid-run, a worker's and then an API server's: the others carry on ticking.
    await stack.workers[0]!.kill();
    const before = (await runsOf(c, 'every-second')).length;
    await runsAtLeast(c, 'every-second', before + 2);
    await api2.kill();
    await runsAtLeast(c, 'every-second', before + 4);

    await c.deleteSchedule('every-second');
    const deletedAt = Date.now();
    expect((await refused(c.getSchedule('every-second'))).code).toBe(Code.NotFound);
    // Proof that every remaining ticker has been through passes since: another schedule runs.
    await c.createSchedule('witness', 'hello', { everyMs: 1000, overlap: 'allow' });
    await runsAtLeast(c, 'witness', 3);
    await c.deleteSchedule('witness');

    const runs = await runsOf(c, 'every-second');
    expect(runs.length).toBeGreaterThanOrEqual(before + 4);
    expectEachTickOnce(runs, 1000);
    for (const r of runs) expect(r.created, `run ${r.id} started after DeleteSchedule returned`).toBeLessThanOrEqual(deletedAt);
    // The runs are ordinary tasks that a worker ran.
    const done = await c.wait(runs.at(-1)!.id);
    expect(done).toBe('Hello tick!');
  });

  it('a second API server sees the same schedules and a create of an existing id is ALREADY_EXISTS', async () => {
    const api2 = await stack.startApi();
    const other = createTaskwireClient({ baseUrl: `http://127.0.0.1:${api2.port}` });
    await stack.client.createSchedule('dup', 'hello', { cron: '0 3 * * *' });
    const err = await refused(other.createSchedule('dup', 'hello', { everyMs: 5000 }));
    expect(err.code).toBe(Code.AlreadyExists);
    expect((await other.getSchedule('dup')).when).toEqual({ case: 'cron', value: '0 3 * * *' });
    const replaced = await other.createSchedule('dup', 'hello', { everyMs: 5000, replace: true });
    expect(replaced.when.case).toBe('every');
    expect((await stack.client.listSchedules()).map((s) => s.id)).toContain('dup');
    await other.deleteSchedule('dup');
    expect((await refused(other.deleteSchedule('dup'))).code).toBe(Code.NotFound);
    await api2.stop();
  });
});

describe('cron', () => {
  it('*/2 * * * * * (seconds first) runs on even seconds, each once', async () => {
    const c = stack.client;
    const s = await c.createSchedule('cron-2s', 'hello', { cron: '*/2 * * * * *', overlap: 'allow' });
    expect(s.timezone).toBe('UTC');
    const runs = await runsAtLeast(c, 'cron-2s', 3);
    await c.deleteSchedule('cron-2s');
    expectEachTickOnce(await runsOf(c, 'cron-2s'), 2000);
    expect(runs[0]!.tick % 2000).toBe(0);
  });
});

describe('overlap', () => {
  it('skip: no run starts while the previous one is not terminal; the skipped ticks are counted', async () => {
    const c = stack.client;
    await c.createSchedule('skip-slow', 'sleep', { everyMs: 1000, args: [2.5], overlap: 'skip' });
    const schedule = await eventually(async () => {
      const s = await c.getSchedule('skip-slow');
      return (await runsOf(c, 'skip-slow')).length >= 2 && s;
    }, 'two runs of skip-slow');
    // A 2.5 s run on a 1 s grid: ticks came while it ran, and were skipped and counted.
    const text = await (await fetch(`${stack.baseUrl}/metrics`)).text();
    expect(text).toMatch(/taskwire_schedule_skipped_total\{schedule="skip-slow",queue="default",task="sleep"\} [1-9]/);
    expect(text).toMatch(/taskwire_schedule_runs_total\{schedule="skip-slow",queue="default",task="sleep"\} [1-9]/);
    await c.deleteSchedule('skip-slow');
    const runs = await runsOf(c, 'skip-slow');
    for (let i = 1; i < runs.length; i++) {
      const prev = await c.status(runs[i - 1]!.id);
      expect(prev.state, 'the previous run ended').not.toBe(TaskState.STARTED);
      const finished = Number(prev.finishedAt!.seconds) * 1000 + Math.floor(prev.finishedAt!.nanos / 1e6);
      expect(runs[i]!.created, `run ${i} was started after run ${i - 1} ended`).toBeGreaterThanOrEqual(finished);
    }
    expect(schedule.id).toBe('skip-slow');
  });

  it('allow: a run starts while the previous one is still running', async () => {
    const c = stack.client;
    await c.createSchedule('allow-slow', 'sleep', { everyMs: 1000, args: [3], overlap: 'allow' });
    const runs = await runsAtLeast(c, 'allow-slow', 3);
    await c.deleteSchedule('allow-slow');
    const first = await c.status(runs[0]!.id);
    // The second run was created before the first one ended.
    const firstEnd = first.finishedAt ? Number(first.finishedAt.seconds) * 1000 : Number.POSITIVE_INFINITY;
    expect(runs[1]!.created).toBeLessThan(firstEnd);
  });
});

describe('pause and resume', () => {
  it('a paused schedule starts nothing; resumed, it runs again on the grid', async () => {
    const c = stack.client;
    await c.createSchedule('pausable', 'hello', { everyMs: 1000, overlap: 'allow' });
    await runsAtLeast(c, 'pausable', 1);
    const paused = await c.pauseSchedule('pausable');
    expect(paused.paused).toBe(true);
    expect(paused.nextRunAt).toBeUndefined();
    const pausedAt = Date.now();
    const count = (await runsOf(c, 'pausable')).length;
    await c.createSchedule('pause-witness', 'hello', { everyMs: 1000, overlap: 'allow' });
    await runsAtLeast(c, 'pause-witness', 3);
    await c.deleteSchedule('pause-witness');
    const whilePaused = await runsOf(c, 'pausable');
    expect(whilePaused.length).toBe(count);
    for (const r of whilePaused) expect(r.created).toBeLessThanOrEqual(pausedAt);
    expect((await c.listSchedules()).find((s) => s.id === 'pausable')?.paused).toBe(true);

    const resumed = await c.resumeSchedule('pausable');
    expect(resumed.paused).toBe(false);
    expect(resumed.nextRunAt).toBeDefined();
    const after = await runsAtLeast(c, 'pausable', count + 2);
    await c.deleteSchedule('pausable');
    expect(new Set(after.map((r) => r.tick)).size).toBe(after.length);
    const got = after.at(-1)!;
    expect(got.tick % 1000).toBe(0);
  });
});
