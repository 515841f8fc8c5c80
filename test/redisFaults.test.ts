/**
 * Redis faults: Redis restarts with its data (append-only file) on the same port while tasks
 * wait, run and are watched. Meanwhile the API answers UNAVAILABLE at once instead of
 * hanging and health says NOT_SERVING; afterwards health says SERVING again, workers and
 * watchers reconnect by themselves, a watcher open across the restart sees every version
 * exactly once up to the terminal one, and no accepted task is lost.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Health, HealthCheckResponse_ServingStatus as Serving } from '../gen/grpc/health/v1/health_pb.js';
import { createTaskwireClient, TaskState, type Task, type TaskwireClient } from '../src/client/index.js';
import { describe as show, Follow, isState, oneToN, versions } from './helpers/follow.js';
import { startTaskwire, stopAll, type TaskwireProcess } from './helpers/processes.js';
import { redisClient, startRedis, type RedisServer } from './helpers/redis.js';

// A lease longer than the outage: a task running across the restart keeps its worker.
const ENV = { TASKWIRE_LEASE: '5s', TASKWIRE_WATCH_HEARTBEAT: '1s' };

// Generous bounds for a loaded machine (each test waits on events, never on a clock).
vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

let dataDir: string;
let redis: RedisServer;
let api: TaskwireProcess;
let workers: TaskwireProcess[];
let baseUrl: string;
let client: TaskwireClient;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'taskwire-redis-faults-'));
  redis = await startRedis({ dataDir });
  api = await startTaskwire('serve', { redisUrl: redis.url, env: ENV });
  workers = await Promise.all(
    ['faults-a', 'faults-b'].map((name) =>
      startTaskwire('worker', { redisUrl: redis.url, args: ['-c', '2'], env: { ...ENV, TASKWIRE_WORKER_NAME: name } }),
    ),
  );
  baseUrl = `http://127.0.0.1:${api.port}`;
  client = createTaskwireClient({ baseUrl });
});
afterAll(async () => {
  await stopAll();
  await redis?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

/** The health status stream; `next(status)` waits for that status. */
function healthWatch(signal: AbortSignal) {
  const health = createClient(Health, createGrpcTransport({ baseUrl }));
  const stream = health.watch({ service: '' }, { signal })[Symbol.asyncIterator]();
  return {
    async next(status: Serving): Promise<void> {
      for (;;) {
        const r = await stream.next();
        if (r.done) throw new Error(`the health watch ended before ${Serving[status]}`);
        if (r.value.status === status) return;
      }
    },
    check: () => health.check({ service: '' }, { timeoutMs: 5000 }),
  };
}

async function unavailable(call: Promise<unknown>): Promise<ConnectError> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  // A deadline error here would mean the call hung waiting for Redis.
  expect(err && Code[err.code], err?.message ?? 'the call succeeded').toBe('Unavailable');
  return err!;
}

describe('a Redis restart', () => {
  it('is ridden out: UNAVAILABLE and NOT_SERVING while down, then everything resumes and no task is lost', async () => {
    const abort = new AbortController();
    const health = healthWatch(abort.signal);
    await health.next(Serving.SERVING);

    // Accepted before the outage: a task that runs across it (watched), tasks waiting in the
    // stream behind the four busy slots, and tasks waiting for their countdown.
    const watched = await client.start('sleep', { args: [3] });
    const follow = new Follow(client, watched.id);
    await follow.until(isState(TaskState.STARTED), 'the watched task started');
    const queued = await Promise.all(Array.from({ length: 8 }, (_, i) => client.start('hello', { args: [`q${i}`, 1] })));
    const scheduled = await Promise.all(Array.from({ length: 3 }, (_, i) => client.start('hello', { args: [`s${i}`], countdownMs: 2000 })));

    await redis.stop();
    await health.next(Serving.NOT_SERVING);
    expect((await health.check()).status).toBe(Serving.NOT_SERVING);
    const refused = await unavailable(client.rpc.start({ name: 'hello' }, { timeoutMs: 5000 }));
    expect(refused.rawMessage).toMatch(/Redis/);
    await unavailable(client.rpc.getStatus({ id: watched.id }, { timeoutMs: 5000 }));
    // The exclusive-key path (a redlock lock first) does not sit out its lock retries either.
    await unavailable(client.rpc.start({ name: 'hello', exclusiveKey: 'k' }, { timeoutMs: 5000 }));
    // A watcher that starts while Redis is down waits it out (the client retries).
    const lateFollow = new Follow(client, queued[0]!.id);
    const late = lateFollow.end();

    redis = await startRedis({ port: redis.port, dataDir });
    await health.next(Serving.SERVING);
    abort.abort();

    // The watcher open across the restart saw every version once, in order, to the end.
    const seen = await follow.end();
    expect(versions(seen)).toEqual(oneToN(seen.length));
    expect(seen.map(show)).toEqual(['v1 PENDING#0', expect.stringMatching(/^v2 STARTED#1@faults-/), expect.stringMatching(/^v3 SUCCESS#1@faults-/)]);
    const lateSeen = await late;
    expect(versions(lateSeen)).toEqual(oneToN(lateSeen.length));
    expect(lateSeen.at(-1)!.state).toBe(TaskState.SUCCESS);

    // Every task accepted before the outage ends, once each.
    const ends = await Promise.all([...queued, ...scheduled].map((t: Task) => new Follow(client, t.id).end()));
    for (const history of ends) {
      expect(versions(history)).toEqual(oneToN(history.length));
      expect(history.at(-1)!.state).toBe(TaskState.SUCCESS);
      expect(history.filter((t) => t.state === TaskState.STARTED)).toHaveLength(1);
    }

    // The same worker processes took new work after the restart without help.
    const after = await Promise.all(Array.from({ length: 4 }, () => client.start('hello', { args: ['after'] })));
    const afterEnds = await Promise.all(after.map((t) => new Follow(client, t.id).end()));
    expect(afterEnds.map((h) => TaskState[h.at(-1)!.state])).toEqual(['SUCCESS', 'SUCCESS', 'SUCCESS', 'SUCCESS']);
    for (const w of workers) {
      expect(w.child.exitCode).toBeNull();
      expect(w.output()).not.toContain('taken over');
    }
    expect(api.child.exitCode).toBeNull();
  });

  it('is ridden out even when Redis comes back empty: workers make their consumer group again and take new work', async () => {
    // A Redis that lost its data (no persistence, a failover to a replica that lagged): the
    // tasks it held are gone, but the workers must not be stuck on a missing group.
    const r = redisClient(redis.url);
    try {
      await r.flushall();
    } finally {
      r.disconnect();
    }
    const tasks = await Promise.all(Array.from({ length: 4 }, (_, i) => client.start('hello', { args: [`empty${i}`] })));
    const ends = await Promise.all(tasks.map((t) => new Follow(client, t.id).end()));
    expect(ends.map((h) => TaskState[h.at(-1)!.state])).toEqual(['SUCCESS', 'SUCCESS', 'SUCCESS', 'SUCCESS']);
  });
});
