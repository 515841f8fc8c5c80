/**
 * Periodic tasks from the outside: bad input refused (INVALID_ARGUMENT naming the field,
 * nothing stored), the CLI's schedule commands, and schedules declared in code.
 */
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { BadRequestSchema } from '../gen/google/rpc/error_details_pb.js';
import type { ScheduleOptions } from '../src/client/index.js';
import { keys } from '../src/store/keys.js';
import { runsAtLeast, runsOf } from './helpers/periodic.js';
import { runTaskwire } from './helpers/processes.js';
import { redisClient } from './helpers/redis.js';
import { refused } from './helpers/refused.js';
import { startStack, type Stack } from './helpers/stack.js';

vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

const FIXTURE = 'test/fixtures/periodicTasks.ts';
let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ workers: 1 });
});
afterAll(async () => {
  await stack?.stop();
});

describe('bad input', () => {
  const cases: [string, string, string, ScheduleOptions][] = [
    ['an unparseable cron', 'schedule.cron', 'hello', { cron: '61 * * * *' }],
    ['a cron of four fields', 'schedule.cron', 'hello', { cron: '* * * *' }],
    ['an unknown time zone', 'schedule.timezone', 'hello', { cron: '0 3 * * *', timezone: 'Mars/Olympus' }],
    ['every under 1s', 'schedule.every', 'hello', { everyMs: 500 }],
    ['neither every nor cron', 'schedule.every', 'hello', {}],
    ['an unknown task name', 'schedule.task.name', 'no-such-task', { everyMs: 1000 }],
    ['bad task args', 'schedule.task.queue', 'hello', { everyMs: 1000, queue: 'no spaces' }],
  ];
  for (const [what, field, task, options] of cases) {
    it(`${what}: INVALID_ARGUMENT naming ${field}, nothing stored`, async () => {
      const err = await refused(stack.client.createSchedule('bad-input', task, options));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toContain(field);
      expect(err.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field)).toEqual([field]);
      expect((await refused(stack.client.getSchedule('bad-input'))).code).toBe(Code.NotFound);
    });
  }

  it('an id that is empty or has spaces, and fields that make no sense on a schedule', async () => {
    for (const [id, opts, field] of [
      ['', {}, 'schedule.id'],
      ['has space', {}, 'schedule.id'],
      ['x'.repeat(200), {}, 'schedule.id'],
      ['ok', { timezone: 'UTC' }, 'schedule.timezone'],
    ] as const) {
      const err = await refused(stack.client.createSchedule(id, 'hello', { everyMs: 1000, ...opts }));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field).toBe(field);
    }
    const err = await refused(
      stack.client.rpc.createSchedule({
        schedule: { id: 'ok', when: { case: 'every', value: { seconds: 5n } }, task: { name: 'hello', idempotencyKey: 'k' } },
      }),
    );
    expect(err.findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field).toBe('schedule.task.idempotency_key');
    expect((await refused(stack.client.rpc.createSchedule({}))).code).toBe(Code.InvalidArgument);
    expect((await refused(stack.client.getSchedule('has space'))).code).toBe(Code.InvalidArgument);
    // Nothing reached Redis: no schedule key at all.
    const redis = redisClient(stack.redis.url);
    try {
      expect(await redis.keys('*schedule*')).toEqual([]);
    } finally {
      redis.disconnect();
    }
    expect(await stack.client.listSchedules()).toEqual([]);
  });
});

describe('replace', () => {
  it('to another queue moves the schedule: one schedule, in the new queue only', async () => {
    const c = stack.client;
    await c.createSchedule('mover', 'hello', { cron: '0 3 * * *', queue: 'q-one' });
    const moved = await c.createSchedule('mover', 'hello', { cron: '0 4 * * *', queue: 'q-two', replace: true });
    expect(moved.task?.queue).toBe('q-two');
    expect((await c.getSchedule('mover')).when).toEqual({ case: 'cron', value: '0 4 * * *' });
    expect((await c.listSchedules()).filter((s) => s.id === 'mover')).toHaveLength(1);
    const redis = redisClient(stack.redis.url);
    try {
      expect(await redis.exists(keys.schedule('q-one', 'mover'))).toBe(0);
      expect(await redis.zscore(keys.schedules('q-one'), 'mover')).toBeNull();
      expect(await redis.zscore(keys.schedules('q-two'), 'mover')).not.toBeNull();
    } finally {
      redis.disconnect();
    }
    await c.deleteSchedule('mover');
    expect(await c.listSchedules()).toEqual([]);
  });
});

describe('the CLI', () => {
  const env = () => ({ TASKWIRE_SERVER: stack.baseUrl });
  const taskwire = (...args: string[]) => runTaskwire(args, env());

  it('schedule create, list, get, pause, resume, delete', async () => {
    const created = await taskwire(
      'schedule',
      'create',
      'cli-nightly',
      '--cron',
      '0 3 * * *',
      '--task',
      'hello',
      '--args',
      '["Lucy"]',
      '--timezone',
      'Europe/Paris',
    );
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    expect(created.stdout).toMatch(
      /^cli-nightly {2}cron '0 3 \* \* \*' Europe\/Paris {2}hello@default {2}skip {2}next \d{4}-\d\d-\d\dT0[12]:00:00\.000Z {2}never run\n$/,
    );

    const again = await taskwire('schedule', 'create', 'cli-nightly', '--every', '10s', '--task', 'hello');
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('AlreadyExists');
    expect((await taskwire('schedule', 'create', 'cli-nightly', '--every', '10s', '--task', 'hello', '--replace')).stdout).toContain('every 10s');

    const list = await taskwire('schedule', 'list', '--json');
    expect(list.code).toBe(0);
    const rows = list.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(rows).toEqual([expect.objectContaining({ id: 'cli-nightly', every_ms: 10_000, task: 'hello', paused: false })]);

    expect((await taskwire('schedule', 'pause', 'cli-nightly')).stdout).toContain('  paused  ');
    expect((await stack.client.getSchedule('cli-nightly')).paused).toBe(true);
    expect((await taskwire('schedule', 'resume', 'cli-nightly')).stdout).toContain('  next ');
    expect((await taskwire('schedule', 'get', 'cli-nightly', '--json')).stdout).toContain('"paused":false');

    // A schedule on a queue no worker reads: created, with a hint on stderr.
    const lonely = await taskwire('schedule', 'create', 'cli-lonely', '--every', '1h', '--task', 'hello', '--queue', 'nobody-reads');
    expect(lonely.code).toBe(0);
    expect(lonely.stderr).toMatch(/^hint: .*nobody-reads/);
    expect((await taskwire('schedule', 'delete', 'cli-lonely')).code).toBe(0);

    const bad = await taskwire('schedule', 'create', 'cli-bad', '--cron', 'nope', '--task', 'hello');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('InvalidArgument: schedule.cron');

    expect((await taskwire('schedule', 'delete', 'cli-nightly')).stdout).toBe('schedule cli-nightly deleted\n');
    expect((await taskwire('schedule', 'list')).stdout).toBe('');
    const gone = await taskwire('schedule', 'delete', 'cli-nightly');
    expect(gone.code).toBe(2);
    expect(gone.stderr).toContain('NotFound');
  });
});

describe('schedules declared in code', () => {
  it('a worker upserts them at start; they run; a second worker leaves an unchanged one as it is', async () => {
    const env = { TASKWIRE_TASKS: FIXTURE };
    const api = await stack.startApi({ env });
    const w1 = await stack.startWorker({ env });
    try {
      await w1.waitFor('schedule declared-in-code from the tasks module: created');
      const s = await stack.client.getSchedule('declared-in-code');
      expect(s.when).toEqual({ case: 'every', value: expect.objectContaining({ seconds: 1n }) });
      expect(s.task?.name).toBe('hello');
      const runs = await runsAtLeast(stack.client, 'declared-in-code', 2);
      expect(await stack.client.wait(runs[0]!.id)).toBe('Hello code!');
      // Paused by hand, it stays paused across a worker's start: the code did not change it.
      await stack.client.pauseSchedule('declared-in-code');
      const w2 = await stack.startWorker({ env });
      await w2.waitFor('schedule declared-in-code from the tasks module: unchanged');
      expect((await stack.client.getSchedule('declared-in-code')).paused).toBe(true);
      await w2.stop();
      // Code that changed it: replaced, still paused.
      const w3 = await stack.startWorker({ env: { ...env, DECLARED_EVERY_MS: '5000' } });
      await w3.waitFor('schedule declared-in-code from the tasks module: replaced');
      const changed = await stack.client.getSchedule('declared-in-code');
      expect(changed.when).toEqual({ case: 'every', value: expect.objectContaining({ seconds: 5n }) });
      expect(changed.paused).toBe(true);
      await w3.stop();
    } finally {
      await w1.stop();
      await api.stop();
      await stack.client.deleteSchedule('declared-in-code').catch(() => undefined);
    }
    expect((await runsOf(stack.client, 'declared-in-code')).length).toBeGreaterThanOrEqual(2);
    const redis = redisClient(stack.redis.url);
    try {
      expect(await redis.exists(keys.schedule('default', 'declared-in-code'))).toBe(0);
    } finally {
      redis.disconnect();
    }
  });
});
