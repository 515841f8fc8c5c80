/**
 * Periodic tasks through outages: a Redis restart (append-only file on), and every taskwire
 * process down for a while (one catch-up run on return, then back on the grid).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { createTaskwireClient } from '../src/client/index.js';
import { keys } from '../src/store/keys.js';
import { expectEachTickOnce, runsAtLeast, runsOf } from './helpers/periodic.js';
import { startTaskwire, stopAll } from './helpers/processes.js';
import { redisClient, startRedis, type RedisServer } from './helpers/redis.js';

vi.setConfig({ testTimeout: 120_000, hookTimeout: 60_000 });

const servers: RedisServer[] = [];
const dirs: string[] = [];
afterAll(async () => {
  await stopAll();
  for (const r of servers) await r.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const env = { TASKWIRE_WATCH_HEARTBEAT: '1s' };

describe('a Redis restart', () => {
  it('with appendonly on: the schedule survives and goes on, each tick still once', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'taskwire-periodic-'));
    dirs.push(dataDir);
    const redis = await startRedis({ dataDir });
    servers.push(redis);
    const api = await startTaskwire('serve', { redisUrl: redis.url, env });
    await startTaskwire('worker', { redisUrl: redis.url, env });
    const client = createTaskwireClient({ baseUrl: `http://127.0.0.1:${api.port}` });
    await client.createSchedule('through-restart', 'hello', { everyMs: 1000, overlap: 'allow' });
    const before = await runsAtLeast(client, 'through-restart', 3);

    await redis.stop();
    const again = await startRedis({ dataDir, port: redis.port });
    servers.push(again);

    const runs = await runsAtLeast(client, 'through-restart', before.length + 3, 'default', 60_000);
    expect((await client.getSchedule('through-restart')).id).toBe('through-restart');
    expectEachTickOnce(runs, 1000);
    await client.deleteSchedule('through-restart');
    await stopAll();
  });
});

describe('every process down', () => {
  it('on return: one catch-up run for the missed ticks, then back on the grid', async () => {
    const redis = await startRedis();
    servers.push(redis);
    const api = await startTaskwire('serve', { redisUrl: redis.url, env });
    const worker = await startTaskwire('worker', { redisUrl: redis.url, env });
    const client = createTaskwireClient({ baseUrl: `http://127.0.0.1:${api.port}` });
    await client.createSchedule('catch-up', 'hello', { everyMs: 1000, overlap: 'allow' });
    await runsAtLeast(client, 'catch-up', 2);
    await Promise.all([worker.stop(), api.stop()]);

    const r = redisClient(redis.url);
    const missed = Number(await r.hget(keys.schedule('default', 'catch-up'), 'next_run_at'));
    const before = Number(await r.hget(keys.schedule('default', 'catch-up'), 'runs'));
    // Let several ticks pass with nothing running.
    await new Promise((resolve) => setTimeout(resolve, 3500));
    expect(Number(await r.hget(keys.schedule('default', 'catch-up'), 'runs'))).toBe(before);
    r.disconnect();

    const api2 = await startTaskwire('serve', { redisUrl: redis.url, env });
    await startTaskwire('worker', { redisUrl: redis.url, env });
    const client2 = createTaskwireClient({ baseUrl: `http://127.0.0.1:${api2.port}` });
    const runs = await runsAtLeast(client2, 'catch-up', before + 2);
    await client2.deleteSchedule('catch-up');
    const all = await runsOf(client2, 'catch-up');
    expectEachTickOnce(all, 1000);
    const after = all.slice(before);
    // The first run after the outage is for the oldest missed tick, and it is the only one
    // for the whole outage: the next is on the grid after the moment it ran.
    expect(after[0]!.tick).toBe(missed);
    expect(after[0]!.created - missed).toBeGreaterThan(3000);
    expect(after[1]!.tick).toBe(Math.floor(after[0]!.created / 1000) * 1000 + 1000);
    expect(runs.filter((x) => x.tick > missed && x.tick < after[1]!.tick)).toEqual([]);
  });
});
