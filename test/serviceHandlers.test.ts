/**
 * The TaskService handlers called in-process through Connect's router transport: the
 * service as the server builds it (a TaskStore on a private Redis, a WatchHub on a second
 * connection, the example tasks), with no HTTP server and no taskwire process. A worker's
 * part, where a test needs one, is the worker's own store (AttemptStore) called here. Each
 * user error is checked for its code and its message, and for writing nothing to Redis.
 * No taskwire process is started, so this suite is part of the fast tier (`npm run test:fast`).
 */
import { randomUUID } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import { durationFromMs, timestampFromMs } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, createClient, createRouterTransport, type Client } from '@connectrpc/connect';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ErrorInfoSchema } from '../gen/google/rpc/error_details_pb.js';
import { TaskState } from '../gen/taskwire/v1/task_pb.js';
import { CancelOutcome, StartRequestSchema, TaskService } from '../gen/taskwire/v1/task_service_pb.js';
import { newTaskId } from '../src/ids.js';
import { createLogger } from '../src/log.js';
import { createTaskService, HINT_HEADER } from '../src/server/taskService.js';
import { WatchHub } from '../src/server/watchHub.js';
import { Consumer } from '../src/broker/consumer.js';
import { AttemptStore } from '../src/store/attemptStore.js';
import { CONSUMER_GROUP, keys } from '../src/store/keys.js';
import { QueueReaders } from '../src/store/queueReaders.js';
import { installScripts } from '../src/store/scripts.js';
import { TaskStore } from '../src/store/taskStore.js';
import registry from '../src/tasks/index.js';
import { redisClient, startRedis, type RedisServer } from './helpers/redis.js';

const LIMITS = { resultTtlMs: 3_600_000, eventLogCap: 100, maxPayloadBytes: 1024 };

let server: RedisServer;
let redis: Redis;
let sub: Redis;
let worker: AttemptStore;
let client: Client<typeof TaskService>;

beforeAll(async () => {
  server = await startRedis();
  redis = redisClient(server.url);
  sub = redisClient(server.url);
  installScripts(redis);
  const store = new TaskStore(redis, registry, LIMITS);
  const hub = new WatchHub(sub, redis);
  const service = createTaskService({
    store,
    hub,
    log: createLogger('api', { level: 'silent', format: 'json' }),
    watchHeartbeatMs: 60_000,
    maxStreamBacklog: 100,
    readers: new QueueReaders(redis),
  });
  client = createClient(
    TaskService,
    createRouterTransport(({ service: serve }) => serve(TaskService, service)),
  );
  worker = new AttemptStore(redis, 'w-test', { ...LIMITS, leaseMs: 30_000 });
});
afterAll(async () => {
  redis?.disconnect();
  sub?.disconnect();
  await server?.stop();
});
beforeEach(async () => {
  await redis.flushall();
  // Every queue these tests use but one is read by a worker (see the hint test).
  for (const q of ['default', 'reports', 'paged']) await redis.xgroup('CREATE', keys.stream(q), CONSUMER_GROUP, '0', 'MKSTREAM');
});

/** The error a call rejected with. */
async function refused(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error('the call was not refused');
}

/** A refused call: its code and message, and that Redis holds exactly what it held before. */
async function refusedUntouched(call: () => Promise<unknown>): Promise<{ code: Code; message: string }> {
  const before = await keyspace();
  const err = await refused(call());
  expect(await keyspace()).toEqual(before);
  return { code: err.code, message: err.rawMessage };
}

async function keyspace(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const key of (await redis.keys('*')).sort()) out[key] = (await redis.dumpBuffer(key))?.toString('hex') ?? '';
  return out;
}

/** What a worker does with the next message of `queue`: read it, begin it; returns how to end it. */
async function beginNext(queue: string): Promise<{ id: string; finish: (result: string) => Promise<unknown> }> {
  const token = randomUUID();
  const [d] = await worker.take(queue, () => new Consumer(redis, 'w-test', [queue]).readNow(redis, queue, 1));
  if (!d) throw new Error(`no task waited on queue ${queue}`);
  const claim = await worker.claim(d, token);
  if (!claim.run) throw new Error(`task ${d.id} did not begin: ${claim.why}`);
  return { id: d.id, finish: (result) => worker.finish(d, token, 'SUCCESS', { result }) };
}

describe('Start', () => {
  it('creates a PENDING task of a registered name and answers its record', async () => {
    const { task } = await client.start({ name: 'hello', args: { values: [] }, kwargs: { name: 'router' } });
    expect(task).toMatchObject({ name: 'hello', queue: 'default', state: TaskState.PENDING, version: 1n, attempt: 0 });
    expect(task!.kwargs).toEqual({ name: 'router' });
    expect(await redis.hget(keys.task('default', task!.id), 'state')).toBe('PENDING');
  });

  it('refuses, before anything reaches Redis, a name that is not registered, a bad queue, and bad times', async () => {
    expect(await refusedUntouched(() => client.start({ name: '' }))).toEqual({
      code: Code.InvalidArgument,
      message: 'name: is required: the name of a registered task',
    });
    expect(await refusedUntouched(() => client.start({ name: 'nope' }))).toEqual({
      code: Code.InvalidArgument,
      message: `name: no task is registered as "nope"; known tasks: ${registry.names().join(', ')}`,
    });
    expect(await refusedUntouched(() => client.start({ name: 'hello', queue: 'no spaces' }))).toEqual({
      code: Code.InvalidArgument,
      message: `queue: "no spaces" is not a queue name: use 1 to 64 letters, digits, '_', '.', '-'`,
    });
    const both = () => client.start({ name: 'hello', countdown: durationFromMs(1000), notBefore: timestampFromMs(Date.now() + 1000) });
    expect(await refusedUntouched(both)).toEqual({ code: Code.InvalidArgument, message: 'countdown: give either not_before or countdown, not both' });
    expect(await refusedUntouched(() => client.start({ name: 'hello', expiresAt: timestampFromMs(Date.now() - 1000) }))).toEqual({
      code: Code.InvalidArgument,
      message: 'expires_at: is in the past: the task would never run',
    });
    expect(await refusedUntouched(() => client.start({ name: 'hello', retry: { maxAttempts: 1001 } }))).toEqual({
      code: Code.InvalidArgument,
      message: 'retry.max_attempts: must be from 1 to 1000',
    });
  });

  it('refuses arguments that are no JSON, and arguments over the payload limit, writing nothing', async () => {
    const notJson = () => client.start({ name: 'hello', args: { values: [{ kind: { case: 'numberValue', value: Number.NaN } }] } });
    expect(await refusedUntouched(notJson)).toEqual({
      code: Code.InvalidArgument,
      message: 'args: holds a number JSON cannot carry (NaN or Infinity)',
    });
    expect(await refusedUntouched(() => client.start({ name: 'hello', kwargs: { n: Number.POSITIVE_INFINITY } }))).toEqual({
      code: Code.InvalidArgument,
      message: 'kwargs: Infinity at kwargs.n is not JSON serializable',
    });

    const big = () => client.start({ name: 'hello', args: { values: [{ kind: { case: 'stringValue', value: 'x'.repeat(2000) } }] } });
    const err = await refused(big());
    expect([err.code, err.rawMessage]).toEqual([Code.ResourceExhausted, 'args and kwargs take 2006 bytes of JSON; the limit is 1024']);
    expect(err.findDetails(ErrorInfoSchema)[0]?.reason).toBe('PAYLOAD_TOO_LARGE');
    expect(await redis.keys(keys.task('default', '*'))).toEqual([]);
  });

  it('refuses a second task with an exclusive key while the first has not finished, naming the first', async () => {
    const { task: first } = await client.start({ name: 'hello', queue: 'reports', exclusiveKey: 'nightly' });
    const err = await refused(client.start({ name: 'hello', queue: 'reports', exclusiveKey: 'nightly' }));
    expect(err.code).toBe(Code.AlreadyExists);
    expect(err.rawMessage).toBe(`a task with exclusive key "nightly" is already running (task ${first!.id}); start another when it has finished`);
    expect(err.findDetails(ErrorInfoSchema)[0]).toMatchObject({
      reason: 'EXCLUSIVE_TASK_RUNNING',
      metadata: { running_task_id: first!.id, exclusive_key: 'nightly' },
    });
    expect(await redis.zcard(keys.index('reports'))).toBe(1);

    // Once the first has finished, the key is free again.
    const run = await beginNext('reports');
    await run.finish('1');
    const { task: second } = await client.start({ name: 'hello', queue: 'reports', exclusiveKey: 'nightly' });
    expect(second!.id).not.toBe(first!.id);
  });

  it('answers a repeat with the same idempotency key with the first task, creating nothing', async () => {
    const { task: first } = await client.start({ name: 'hello', idempotencyKey: 'order-1' });
    const before = await keyspace();
    const { task: again } = await client.start({ name: 'hello', idempotencyKey: 'order-1', kwargs: { other: true } });
    expect(again!.id).toBe(first!.id);
    expect(again!.kwargs).toEqual({});
    expect(await keyspace()).toEqual(before);
  });

  it('says in a response header when no worker has read the queue the task went to', async () => {
    let hint: string | null = null;
    await client.start({ name: 'hello', queue: 'nobody-reads' }, { onHeader: (h) => (hint = h.get(HINT_HEADER)) });
    expect(hint).toMatch(/^no worker has read queue "nobody-reads" yet/);
    let none: string | null = 'unset';
    await client.start({ name: 'hello' }, { onHeader: (h) => (none = h.get(HINT_HEADER)) });
    expect(none).toBeNull();
  });
});

describe('StartMany', () => {
  it('answers each request on its own, in order: a refused one refuses only itself', async () => {
    const { task: holder } = await client.start({ name: 'hello', queue: 'reports', exclusiveKey: 'k' });
    const { results } = await client.startMany({
      requests: [
        create(StartRequestSchema, { name: 'hello' }),
        create(StartRequestSchema, { name: 'nope' }),
        create(StartRequestSchema, { name: 'hello', queue: 'reports', exclusiveKey: 'k' }),
        create(StartRequestSchema, { name: 'hello', kwargs: { n: 2 } }),
      ],
    });
    expect(results.map((r) => r.outcome.case)).toEqual(['task', 'error', 'error', 'task']);
    const [ok, unknown, conflict, last] = results.map((r) => r.outcome.value!);
    expect(unknown).toMatchObject({ code: Code.InvalidArgument, message: expect.stringMatching(/^name: no task is registered as "nope"/) });
    expect(conflict).toMatchObject({ code: Code.AlreadyExists, existingTaskId: holder!.id });
    expect((last as { kwargs?: unknown }).kwargs).toEqual({ n: 2 });
    // Queued in the order given.
    const ids = (await redis.xrange(keys.stream('default'), '-', '+')).map(([, f]) => f[1]);
    expect(ids).toEqual([(ok as { id: string }).id, (last as { id: string }).id]);
  });

  it('refuses more than 1000 requests in one call, writing nothing', async () => {
    const requests = Array.from({ length: 1001 }, () => create(StartRequestSchema, { name: 'hello' }));
    expect(await refusedUntouched(() => client.startMany({ requests }))).toEqual({
      code: Code.ResourceExhausted,
      message: 'at most 1000 tasks per StartMany; got 1001',
    });
  });
});

describe('GetStatus', () => {
  it('reads a task by id, or the latest one started on a queue or with an exclusive key', async () => {
    const { task: keyed } = await client.start({ name: 'hello', queue: 'reports', exclusiveKey: 'nightly' });
    const { task: latest } = await client.start({ name: 'hello', queue: 'reports' });
    expect((await client.getStatus({ id: keyed!.id })).task).toEqual(keyed);
    expect((await client.getStatus({ queue: 'reports' })).task!.id).toBe(latest!.id);
    expect((await client.getStatus({ queue: 'reports', exclusiveKey: 'nightly' })).task!.id).toBe(keyed!.id);
  });

  it('refuses a text that is no task id, and answers NOT_FOUND for an unknown task or an empty queue', async () => {
    expect(await refusedUntouched(() => client.getStatus({ id: 'not-an-id' }))).toEqual({
      code: Code.InvalidArgument,
      message: 'id: "not-an-id" is not a task id',
    });
    const unknown = newTaskId('default');
    expect(await refusedUntouched(() => client.getStatus({ id: unknown }))).toEqual({
      code: Code.NotFound,
      message: `no task with id ${unknown} (unknown, or its record expired after the result TTL)`,
    });
    expect(await refusedUntouched(() => client.getStatus({}))).toEqual({
      code: Code.NotFound,
      message: 'no task has been started on queue "default" yet; give a task id',
    });
    expect(await refusedUntouched(() => client.getStatus({ queue: 'reports', exclusiveKey: 'never' }))).toEqual({
      code: Code.NotFound,
      message: 'no task has been started with exclusive key "never" on queue "reports"',
    });
    expect(await refusedUntouched(() => client.getStatus({ queue: 'bad queue' }))).toEqual({
      code: Code.InvalidArgument,
      message: 'queue: "bad queue" is not a queue name',
    });
  });
});

describe('Cancel', () => {
  it('revokes a waiting task, asks a running one to stop, and leaves a finished one alone', async () => {
    const { task: waiting } = await client.start({ name: 'hello', countdown: durationFromMs(60_000) });
    const revoked = await client.cancel({ id: waiting!.id, reason: 'not needed' });
    expect(revoked.outcome).toBe(CancelOutcome.REVOKED);
    expect(revoked.task).toMatchObject({ state: TaskState.REVOKED, error: { type: 'TaskRevokedError', message: 'not needed' } });

    await client.start({ name: 'hello' });
    const running = await beginNext('default');
    const requested = await client.cancel({ id: running.id });
    expect(requested).toMatchObject({
      outcome: CancelOutcome.REQUESTED,
      message: 'the task is running; its worker has been told to stop it',
      task: { state: TaskState.STARTED, cancelRequested: true },
    });
    // A cancel asked for turns the attempt's outcome into REVOKED.
    await running.finish('1');
    const finished = await client.cancel({ id: running.id, terminate: true });
    expect(finished.outcome).toBe(CancelOutcome.ALREADY_FINISHED);
    expect(finished.task).toMatchObject({ state: TaskState.REVOKED, error: { message: 'cancelled by request' } });
  });

  it('cancels the latest task started with an exclusive key when no id is given', async () => {
    await client.start({ name: 'hello', queue: 'reports', exclusiveKey: 'nightly', countdown: durationFromMs(60_000) });
    const { task: other } = await client.start({ name: 'hello', queue: 'reports' });
    const res = await client.cancel({ queue: 'reports', exclusiveKey: 'nightly' });
    expect(res.outcome).toBe(CancelOutcome.REVOKED);
    expect(res.task!.exclusiveKey).toBe('nightly');
    expect((await client.getStatus({ id: other!.id })).task!.state).toBe(TaskState.PENDING);
    // Revoked, the key is free for the next task.
    await client.start({ name: 'hello', queue: 'reports', exclusiveKey: 'nightly' });
  });

  it('refuses a bad id and answers NOT_FOUND for an unknown task, writing nothing', async () => {
    expect(await refusedUntouched(() => client.cancel({ id: 'nope' }))).toEqual({
      code: Code.InvalidArgument,
      message: 'id: "nope" is not a task id',
    });
    const unknown = newTaskId('default');
    expect(await refusedUntouched(() => client.cancel({ id: unknown }))).toEqual({
      code: Code.NotFound,
      message: `no task with id ${unknown} (unknown, or its record expired after the result TTL)`,
    });
  });
});

describe('ListTasks', () => {
  it('pages through a queue newest first with the tokens it hands out, and filters by state and name', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await client.start({ name: i === 2 ? 'fail' : 'hello', queue: 'paged' })).task!.id);
    const seen: string[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const page = await client.listTasks({ queue: 'paged', pageSize: 2, pageToken });
      expect(page.tasks.length).toBeLessThanOrEqual(2);
      seen.push(...page.tasks.map((t) => t.id));
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken && pages < 10);
    expect(seen).toEqual([...ids].reverse());

    expect((await client.listTasks({ queue: 'paged', name: 'fail' })).tasks.map((t) => t.id)).toEqual([ids[2]]);
    await client.cancel({ id: ids[0]! });
    const revoked = await client.listTasks({ queue: 'paged', states: [TaskState.REVOKED] });
    expect(revoked.tasks.map((t) => t.id)).toEqual([ids[0]]);
  });

  it('answers only the tasks created at or after created_after', async () => {
    const { task: old } = await client.start({ name: 'hello', queue: 'paged' });
    await redis.zadd(keys.index('paged'), 1_000, old!.id);
    const { task: recent } = await client.start({ name: 'hello', queue: 'paged' });
    const page = await client.listTasks({ queue: 'paged', createdAfter: timestampFromMs(1_000_000) });
    expect(page.tasks.map((t) => t.id)).toEqual([recent!.id]);
  });

  it('answers at most 500 tasks a page, however many are asked for', async () => {
    const requests = Array.from({ length: 501 }, () => create(StartRequestSchema, { name: 'hello', queue: 'paged' }));
    await client.startMany({ requests });
    const page = await client.listTasks({ queue: 'paged', pageSize: 10_000 });
    expect(page.tasks).toHaveLength(500);
    expect(page.nextPageToken).not.toBe('');
    expect((await client.listTasks({ queue: 'paged', pageToken: page.nextPageToken })).tasks).toHaveLength(1);
  });

  it('refuses a page token it did not hand out and a bad queue name', async () => {
    const message = 'page_token: is not a token from a previous response: leave it empty for the first page';
    for (const pageToken of ['not a token', Buffer.from('-1').toString('base64url'), 'MA==']) {
      expect(await refusedUntouched(() => client.listTasks({ queue: 'paged', pageToken }))).toEqual({ code: Code.InvalidArgument, message });
    }
    expect(await refusedUntouched(() => client.listTasks({ queue: 'no/slash' }))).toEqual({
      code: Code.InvalidArgument,
      message: 'queue: "no/slash" is not a queue name',
    });
  });
});

describe('WatchStatus', () => {
  it('streams every version of the task once, in order, and ends after the terminal one', async () => {
    const { task } = await client.start({ name: 'hello', kwargs: { name: 'watch' } });
    const stream = client.watchStatus({ id: task!.id });
    const seen: [bigint, TaskState][] = [];
    let ran = false;
    for await (const res of stream) {
      if (res.event.case !== 'task') continue;
      const t = res.event.value;
      seen.push([t.version, t.state]);
      // Every record sent carries the task's arguments, though change events leave them out.
      expect(t.kwargs).toEqual({ name: 'watch' });
      if (!ran) {
        ran = true;
        const run = await beginNext('default');
        await run.finish('"done"');
      }
    }
    expect(seen).toEqual([
      [1n, TaskState.PENDING],
      [2n, TaskState.STARTED],
      [3n, TaskState.SUCCESS],
    ]);
  });

  it('resumes after a version it has sent, and ends at once on a finished task', async () => {
    const { task } = await client.start({ name: 'hello' });
    const run = await beginNext('default');
    await run.finish('1');
    const versions: bigint[] = [];
    for await (const res of client.watchStatus({ id: task!.id, afterVersion: 1n })) {
      if (res.event.case === 'task') versions.push(res.event.value.version);
    }
    expect(versions).toEqual([2n, 3n]);
  });

  it('watches the latest task started with an exclusive key when no id is given', async () => {
    const { task } = await client.start({ name: 'hello', queue: 'reports', exclusiveKey: 'nightly' });
    await client.cancel({ id: task!.id });
    const seen: [string, TaskState][] = [];
    for await (const res of client.watchStatus({ queue: 'reports', exclusiveKey: 'nightly' }, { timeoutMs: 10_000 })) {
      if (res.event.case === 'task') seen.push([res.event.value.id, res.event.value.state]);
    }
    expect(seen).toEqual([[task!.id, TaskState.REVOKED]]);
  });

  it('refuses a bad id, an unknown task, and a version no task reaches', async () => {
    const drain = async (req: Parameters<typeof client.watchStatus>[0]) => {
      for await (const _ of client.watchStatus(req, { timeoutMs: 10_000 })) {
        // nothing is expected before the refusal
      }
    };
    expect(await refusedUntouched(() => drain({ id: 'nope' }))).toEqual({ code: Code.InvalidArgument, message: 'id: "nope" is not a task id' });
    const unknown = newTaskId('default');
    const missing = await refusedUntouched(() => drain({ id: unknown }));
    expect(missing.code).toBe(Code.NotFound);
    expect(missing.message).toBe(`no task with id ${unknown} (unknown, or its record expired after the result TTL)`);
    const { task } = await client.start({ name: 'hello' });
    expect(await refusedUntouched(() => drain({ id: task!.id, afterVersion: BigInt(Number.MAX_SAFE_INTEGER) + 1n }))).toEqual({
      code: Code.InvalidArgument,
      message: `after_version: must be at most ${Number.MAX_SAFE_INTEGER}, a version the watch has sent`,
    });
  });
});

describe('Run', () => {
  it('starts the task and streams its versions to the terminal one', async () => {
    const states: TaskState[] = [];
    let ran = false;
    for await (const res of client.run({ name: 'hello', idempotencyKey: 'run-1' })) {
      if (res.event.case !== 'task') continue;
      states.push(res.event.value.state);
      if (!ran) {
        ran = true;
        await (await beginNext('default')).finish('"hi"');
      }
    }
    expect(states).toEqual([TaskState.PENDING, TaskState.STARTED, TaskState.SUCCESS]);

    // A repeat of the finished task answers its terminal record alone.
    const again: TaskState[] = [];
    for await (const res of client.run({ name: 'hello', idempotencyKey: 'run-1' })) {
      if (res.event.case === 'task') again.push(res.event.value.state);
    }
    expect(again).toEqual([TaskState.SUCCESS]);
  });

  it('refuses what Start refuses, with the same code and message, writing nothing', async () => {
    const drain = async () => {
      for await (const _ of client.run({ name: 'nope' }, { timeoutMs: 10_000 })) {
        // nothing is expected before the refusal
      }
    };
    expect(await refusedUntouched(drain)).toEqual({
      code: Code.InvalidArgument,
      message: `name: no task is registered as "nope"; known tasks: ${registry.names().join(', ')}`,
    });
  });
});
