/**
 * The fire script alone against a private Redis: many callers racing
 * for one tick start one run, it touches only the keys it names, a tick ahead of Redis's
 * clock is left alone, and overlap skip counts a tick whose last run has not finished.
 * No taskwire process is started, so this suite is part of the fast tier (`npm run test:fast`).
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ScheduleStore } from '../src/beat/scheduleStore.js';
import { keys } from '../src/store/keys.js';
import { installScripts } from '../src/store/scripts.js';
import { TaskStore } from '../src/store/taskStore.js';
import registry from '../src/tasks/index.js';
import { redisClient, startRedis, type RedisServer } from './helpers/redis.js';

const LIMITS = { resultTtlMs: 60_000, eventLogCap: 100, maxPayloadBytes: 1 << 20 };
let server: RedisServer;
let conns: Redis[] = [];
let stores: ScheduleStore[] = [];

beforeAll(async () => {
  server = await startRedis();
  conns = Array.from({ length: 8 }, () => {
    const r = redisClient(server.url);
    installScripts(r);
    return r;
  });
  stores = conns.map((r) => new ScheduleStore(r, new TaskStore(r, registry, LIMITS), LIMITS));
});
afterAll(async () => {
  for (const r of conns) r.disconnect();
  await server?.stop();
});
beforeEach(async () => {
  await conns[0]!.flushall();
});

const until = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms - Date.now()) + 5));

describe('fire', () => {
  it('callers racing for one tick: one starts the run, the rest are told stale; only its keys are written', async () => {
    const { schedule } = await stores[0]!.put({ id: 'race', everyMs: 1000, overlap: 'allow', task: { name: 'hello' } });
    const tick = schedule.nextRunAt!;
    await until(tick);
    const outcomes = await Promise.all(stores.flatMap((s) => [s.fire('default', 'race'), s.fire('default', 'race')]));
    expect(outcomes.filter((o) => o === 'created')).toHaveLength(1);
    expect(outcomes.filter((o) => o === 'stale')).toHaveLength(outcomes.length - 1);

    const after = await stores[0]!.get('race');
    expect(after.lastRunAt).toBe(tick);
    expect(after.runs).toBe(1);
    expect(after.nextRunAt).toBeGreaterThan(tick);
    expect(after.nextRunAt! % 1000).toBe(0);
    const id = after.lastTaskId!;
    const q = 'default';
    expect((await conns[0]!.keys('*')).sort()).toEqual(
      [
        // The set of queues in use, which the store adds the run's queue to.
        keys.queues(),
        keys.scheduleRegistry(),
        keys.schedule(q, 'race'),
        keys.schedules(q),
        keys.task(q, id),
        keys.events(q, id),
        keys.stream(q),
        keys.index(q),
        keys.latest(q),
        keys.idempotency(q, `schedule:race:${tick}`),
      ].sort(),
    );
    const record = await conns[0]!.hgetall(keys.task(q, id));
    expect(record).toMatchObject({ name: 'hello', state: 'PENDING', schedule: 'race', ikey: `schedule:race:${tick}` });
  });

  it('a tick still ahead by Redis clock is not fired, whatever the caller believes the time is', async () => {
    const { schedule } = await stores[0]!.put({ id: 'early', everyMs: 60_000, task: { name: 'hello' } });
    const before = (await conns[0]!.keys('*')).sort();
    expect(await stores[0]!.fire('default', 'early', schedule.nextRunAt! + 1)).toBe('early');
    expect((await conns[0]!.keys('*')).sort()).toEqual(before);
    expect((await stores[0]!.get('early')).runs).toBe(0);
  });

  it('overlap skip: a tick while the last run is not terminal is skipped and counted, and the schedule moves on', async () => {
    const { schedule } = await stores[0]!.put({ id: 'skipper', everyMs: 1000, task: { name: 'hello' } });
    await until(schedule.nextRunAt!);
    expect(await stores[0]!.fire('default', 'skipper')).toBe('created');
    const first = await stores[0]!.get('skipper');
    await until(first.nextRunAt!);
    // The run is still PENDING: not terminal.
    expect(await stores[1]!.fire('default', 'skipper')).toBe('skipped');
    const second = await stores[0]!.get('skipper');
    expect(second).toMatchObject({ runs: 1, skipped: 1, lastTaskId: first.lastTaskId });
    expect(second.nextRunAt).toBeGreaterThan(first.nextRunAt!);
    // Finished, the next tick runs.
    await conns[0]!.hset(keys.task('default', first.lastTaskId!), 'state', 'SUCCESS');
    await until(second.nextRunAt!);
    expect(await stores[0]!.fire('default', 'skipper')).toBe('created');
    expect((await stores[0]!.get('skipper')).runs).toBe(2);
  });

  it('a deleted or paused schedule is never fired', async () => {
    const { schedule } = await stores[0]!.put({ id: 'gone', everyMs: 1000, task: { name: 'hello' } });
    await stores[0]!.put({ id: 'held', everyMs: 1000, task: { name: 'hello' } });
    await stores[0]!.pause('held');
    await stores[0]!.delete('gone');
    await until(schedule.nextRunAt!);
    expect(await stores[0]!.fire('default', 'gone')).toBe('stale');
    expect(await stores[0]!.fire('default', 'held')).toBe('stale');
    expect(await stores[0]!.due('default', Date.now())).toEqual([]);
    expect(await conns[0]!.keys(keys.task('default', '*'))).toEqual([]);
  });
});

describe('put', () => {
  it('a replacement that changes nothing keeps the next run; one that ends a pause starts at the next tick', async () => {
    const spec = { id: 'same', everyMs: 60_000, task: { name: 'hello' } };
    const { schedule } = await stores[0]!.put(spec);
    const again = await stores[0]!.put(spec, { replace: true });
    expect(again.outcome).toBe('unchanged');
    expect(again.schedule.nextRunAt).toBe(schedule.nextRunAt);
    // Paused with a next run in the past: replacing it unpaused must not fire the missed tick.
    await stores[0]!.pause('same');
    await conns[0]!.hset(keys.schedule('default', 'same'), 'next_run_at', '60000');
    const resumed = await stores[0]!.put(spec, { replace: true });
    expect(resumed.schedule.paused).toBe(false);
    expect(resumed.schedule.nextRunAt).toBeGreaterThan(Date.now());
  });
});
