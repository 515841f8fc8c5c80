/**
 * Contracts of the store's Lua scripts, each called alone against a private Redis as its
 * TypeScript caller calls it: what it may touch (the keys whose value or expiry changed
 * between a snapshot of the whole keyspace before and after the call, every one of them
 * among the KEYS the call gave, so a Redis Cluster can route it), what it returns,
 * what it refuses (a refusal changes no key), and what the loader refuses before anything
 * reaches Redis.
 * No taskwire process is started, so this suite is part of the fast tier (`npm run test:fast`).
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Consumer } from '../src/broker/consumer.js';
import { enqueueCall } from '../src/store/enqueueBatcher.js';
import { cancelKeys, channels, keys } from '../src/store/keys.js';
import { TaskStore } from '../src/store/taskStore.js';
import registry from '../src/tasks/index.js';
import { newTaskId } from '../src/ids.js';
import { newRecordFields, pairsToHash, type TaskRecord } from '../src/store/record.js';
import { installScripts, runScript } from '../src/store/scripts.js';
import { redisClient, startRedis, type RedisServer } from './helpers/redis.js';

const GROUP = 'workers';
let server: RedisServer;
let redis: Redis;

beforeAll(async () => {
  server = await startRedis();
  redis = redisClient(server.url);
  installScripts(redis);
});
afterAll(async () => {
  redis?.disconnect();
  await server?.stop();
});
beforeEach(async () => {
  await redis.flushall();
});

const Q = 'contracts';
const CAP = 100;
const TTL = 60_000;
const WORKER = 'w1';
const LIMITS = { eventLogCap: CAP, resultTtlMs: TTL };

/** Every key with its value (DUMP: for a stream that includes its groups, consumers and
 * pending lists) and whether it expires. */
async function keyspace(): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const key of await redis.keys('*')) {
    const dump = await redis.dumpBuffer(key);
    const ttl = await redis.pttl(key);
    out.set(key, `${dump?.toString('hex')}|${ttl >= 0 ? 'expires' : 'kept'}`);
  }
  return out;
}

/** The KEYS of the script calls made (through `call`) since `touching` began. */
let declared: Set<string> | undefined;

/** runScript, with the KEYS it is given noted for `touching`. */
function call(name: Parameters<typeof runScript>[1], keyList: string[], args: (string | number)[]): Promise<unknown> {
  for (const k of keyList) declared?.add(k);
  return runScript(redis, name, keyList, args);
}

/**
 * Run `fn` and say which keys it created, changed or removed (sorted), with its reply. Every
 * key touched must be among the KEYS of the script calls `fn` made.
 */
async function touching<T>(fn: () => Promise<T>): Promise<{ reply: T; touched: string[] }> {
  const before = await keyspace();
  declared = new Set();
  let reply: T;
  try {
    reply = await fn();
  } finally {
    const given = declared;
    declared = undefined;
    const after = await keyspace();
    const touched = [...new Set([...before.keys(), ...after.keys()])].filter((k) => before.get(k) !== after.get(k));
    if (given.size > 0)
      expect(
        touched.filter((k) => !given.has(k)),
        'keys touched that were not in KEYS',
      ).toEqual([]);
    lastTouched = touched.sort();
  }
  return { reply, touched: lastTouched };
}
let lastTouched: string[] = [];

const sorted = (list: string[]) => [...list].sort();

/** The next `count` messages published on `channel`, in order (subscribed when this resolves). */
async function nextMessages(channel: string, count: number): Promise<() => Promise<string[]>> {
  const sub = redisClient(server.url);
  const messages: string[] = [];
  const heard = new Promise<string[]>((resolve) =>
    sub.on('smessage', (_c: string, message: string) => {
      if (messages.push(message) === count) resolve(messages);
    }),
  );
  await sub.ssubscribe(channel);
  return async () => {
    try {
      return await heard;
    } finally {
      sub.disconnect();
    }
  };
}

/** The next message published on `channel` (subscribed when this resolves). */
async function nextMessage(channel: string): Promise<() => Promise<string>> {
  const heard = await nextMessages(channel, 1);
  return async () => (await heard())[0]!;
}

function newTask(over: Partial<TaskRecord> = {}): TaskRecord {
  const now = Date.now();
  return {
    id: newTaskId(Q),
    name: 'hello',
    queue: Q,
    state: 'PENDING',
    args: ['world'],
    kwargs: { loud: true },
    attempt: 0,
    maxAttempts: 1,
    version: 0,
    createdAt: now,
    updatedAt: now,
    ...over,
  };
}

/** enqueue-n.lua as TaskStore calls it for a task with an exclusive key: alone, with the holder it saw. */
function enqueue(task: TaskRecord, holder = ''): Promise<unknown> {
  const { keys: keyList, args } = enqueueCall(Q, [{ task, fields: newRecordFields(task), holder }], LIMITS);
  return call('enqueue', keyList, args);
}

/** enqueue-n.lua as EnqueueBatcher calls it for the tasks of one turn. */
function enqueueBatch(tasks: TaskRecord[]): Promise<unknown> {
  const { keys: keyList, args } = enqueueCall(
    Q,
    tasks.map((task) => ({ task, fields: newRecordFields(task) })),
    LIMITS,
  );
  return call('enqueue', keyList, args);
}

interface AttemptCall {
  finishes?: { id: string; msg: string; token: string; state: string; nextAt?: number; ekey?: string; fields?: string[] }[];
  claims?: { id: string; msg: string; token: string; ekey?: string }[];
  nonce?: string;
  answered?: string[];
  worker?: string;
}

type ClaimReply = [string, string[]?];
type AttemptReply = [unknown[], ClaimReply[]];

/** attempt-n.lua as AttemptStore calls it. */
function attempt(c: AttemptCall): Promise<unknown> {
  const worker = c.worker ?? WORKER;
  const finishes = c.finishes ?? [];
  const claims = c.claims ?? [];
  const answered = c.answered ?? [];
  const keyList = [keys.stream(Q), keys.scheduled(Q), keys.replies(Q, worker), keys.stats(Q)];
  const taskKeys = (id: string, ekey = '') => keyList.push(keys.task(Q, id), keys.events(Q, id), keys.exclusive(Q, ekey));
  const args: (string | number)[] = [GROUP, worker, Date.now(), channels.events(Q), CAP, TTL, finishes.length, claims.length];
  args.push(c.nonce ?? randomUUID(), TTL, answered.length, ...answered);
  for (const f of finishes) {
    const fields = f.fields ?? [];
    taskKeys(f.id, f.ekey);
    args.push(f.id, f.msg, f.token, f.state, f.nextAt ?? 0, fields.length, ...fields);
  }
  for (const cl of claims) {
    taskKeys(cl.id, cl.ekey);
    args.push(cl.id, cl.msg, cl.token);
  }
  return call('attempt', keyList, args);
}

/** The next `count` new messages of the queue for `worker`, as the worker reads them (Consumer.readNow). */
function readNow(count: number, worker = WORKER): Promise<{ id: string; msgId: string; ekey: string }[]> {
  return new Consumer(redis, worker, [Q]).readNow(redis, Q, count);
}

/** A task created, read and begun by `worker` (attempt 1): its id and message id. */
async function begun(over: Partial<TaskRecord> = {}, token = 'tok-1', worker = WORKER): Promise<{ id: string; msg: string }> {
  const task = newTask(over);
  await redis.xgroup('CREATE', keys.stream(Q), GROUP, '0', 'MKSTREAM').catch(() => {});
  expect(await (over.exclusiveKey ? enqueue(task) : enqueueBatch([task]))).toEqual(['created', 1]);
  const [d] = await readNow(1, worker);
  expect(d?.id).toBe(task.id);
  const [, claimed] = (await attempt({ claims: [{ id: task.id, msg: d!.msgId, token, ekey: d!.ekey }], worker })) as AttemptReply;
  expect(claimed[0]![0]).toBe('run');
  return { id: task.id, msg: d!.msgId };
}

describe('promote', () => {
  const q = Q;

  it('moves the tasks that are due onto the stream, oldest first, and returns when the next one is due', async () => {
    await redis.zadd(keys.scheduled(q), 100, 'a\n', 200, 'b\nkey-b', 5_000, 'c\n');
    const [moved, next] = (await call('promote', [keys.scheduled(q), keys.stream(q)], [300, 10])) as [number, string];
    expect(moved).toBe(2);
    expect(Number(next)).toBe(5_000);
    const entries = await redis.xrange(keys.stream(q), '-', '+');
    expect(entries.map(([, fields]) => fields)).toEqual([
      ['id', 'a', 'k', ''],
      ['id', 'b', 'k', 'key-b'],
    ]);
    expect(await redis.zrange(keys.scheduled(q), 0, -1)).toEqual(['c\n']);
    // It touches its two keys and nothing else.
    expect((await redis.keys('*')).sort()).toEqual([keys.scheduled(q), keys.stream(q)].sort());
  });

  it('moves at most the number it is given, and answers -1 when nothing else waits', async () => {
    await redis.zadd(keys.scheduled(q), 1, 'a\n', 2, 'b\n', 3, 'c\n');
    const first = (await call('promote', [keys.scheduled(q), keys.stream(q)], [10, 2])) as [number, string];
    expect(first[0]).toBe(2);
    expect(Number(first[1])).toBe(3);
    const second = (await call('promote', [keys.scheduled(q), keys.stream(q)], [10, 2])) as [number, string];
    expect(second).toEqual([1, '-1']);
    expect(await redis.xlen(keys.stream(q))).toBe(3);
  });
});

describe('trim', () => {
  const q = Q;

  it('removes delivered and acknowledged entries and keeps the pending and the undelivered', async () => {
    const stream = keys.stream(q);
    await redis.xgroup('CREATE', stream, GROUP, '0', 'MKSTREAM');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await redis.xadd(stream, '*', 'id', `t${i}`))!);
    // Three delivered: the first two acknowledged, the third still pending; two never read.
    await redis.xreadgroup('GROUP', GROUP, 'c1', 'COUNT', 3, 'STREAMS', stream, '>');
    await redis.xack(stream, GROUP, ids[0]!, ids[1]!);
    const { reply, touched } = await touching(() => call('trim', [stream], [GROUP]));
    expect(Number(reply)).toBe(2);
    expect(touched).toEqual([stream]);
    expect((await redis.xrange(stream, '-', '+')).map(([id]) => id)).toEqual(ids.slice(2));
  });

  it('removes nothing from a stream without the group, or no stream at all', async () => {
    expect(Number(await call('trim', [keys.stream(q)], [GROUP]))).toBe(0);
    expect(await redis.exists(keys.stream(q))).toBe(0);
    await redis.xadd(keys.stream(q), '*', 'id', 't');
    expect(Number(await call('trim', [keys.stream(q)], [GROUP]))).toBe(0);
    expect(await redis.xlen(keys.stream(q))).toBe(1);
  });
});

describe('enqueue', () => {
  it('writes the record at version 1, logs and publishes it without its arguments, and queues it', async () => {
    const task = newTask();
    const published = await nextMessage(channels.events(Q));
    const { reply, touched } = await touching(() => enqueue(task));
    expect(reply).toEqual(['created', 1]);
    expect(touched).toEqual(sorted([keys.task(Q, task.id), keys.events(Q, task.id), keys.stream(Q), keys.index(Q), keys.latest(Q)]));
    const record = await redis.hgetall(keys.task(Q, task.id));
    expect(record).toMatchObject({ id: task.id, state: 'PENDING', version: '1', args: '["world"]' });
    const log = (await redis.xrange(keys.events(Q, task.id), '-', '+')) as [string, string[]][];
    expect(log.map(([logId]) => logId)).toEqual(['1-0']);
    const logged = log[0]![1];
    expect(pairsToHash(logged)).not.toHaveProperty('args');
    expect(pairsToHash(JSON.parse(await published()) as string[])).toEqual(pairsToHash(logged));
    expect((await redis.xrange(keys.stream(Q), '-', '+')).map(([, f]) => f)).toEqual([['id', task.id, 'k', '']]);
    expect(await redis.zscore(keys.index(Q), task.id)).toBe(String(task.createdAt));
    expect(await redis.get(keys.latest(Q))).toBe(task.id);
  });

  it('puts a task with a countdown in the scheduled set, not the stream, and tells workers when it is due', async () => {
    const due = Date.now() + 60_000;
    const task = newTask({ notBefore: due, exclusiveKey: 'nightly' });
    const control = await nextMessage(channels.control(Q));
    const { reply, touched } = await touching(() => enqueue(task));
    expect(reply).toEqual(['created', 1]);
    expect(touched).toEqual(
      sorted([
        keys.task(Q, task.id),
        keys.events(Q, task.id),
        keys.scheduled(Q),
        keys.index(Q),
        keys.latest(Q),
        keys.exclusive(Q, 'nightly'),
        keys.latestForKey(Q, 'nightly'),
      ]),
    );
    expect(await control()).toBe(`due\n${due}`);
    expect(await redis.zrange(keys.scheduled(Q), 0, -1, 'WITHSCORES')).toEqual([`${task.id}\nnightly`, String(due)]);
  });

  it('takes the exclusive and idempotency keys it is given, the idempotency key for the result TTL', async () => {
    const task = newTask({ exclusiveKey: 'report', idempotencyKey: 'order-1' });
    const { touched } = await touching(() => enqueue(task));
    expect(touched).toEqual(
      sorted([
        keys.task(Q, task.id),
        keys.events(Q, task.id),
        keys.stream(Q),
        keys.index(Q),
        keys.latest(Q),
        keys.exclusive(Q, 'report'),
        keys.latestForKey(Q, 'report'),
        keys.idempotency(Q, 'order-1'),
      ]),
    );
    expect(await redis.get(keys.exclusive(Q, 'report'))).toBe(task.id);
    expect(await redis.get(keys.idempotency(Q, 'order-1'))).toBe(task.id);
    expect(await redis.pttl(keys.idempotency(Q, 'order-1'))).toBeGreaterThan(0);
    expect(await redis.pttl(keys.exclusive(Q, 'report'))).toBe(-1);
  });

  it('refuses, writing nothing, a repeated idempotency key, a held exclusive key, a holder that moved, and a taken id', async () => {
    const first = newTask({ exclusiveKey: 'report', idempotencyKey: 'order-1' });
    await enqueue(first);

    const repeat = newTask({ idempotencyKey: 'order-1' });
    expect(await touching(() => enqueue(repeat))).toEqual({ reply: ['duplicate', first.id], touched: [] });

    const second = newTask({ exclusiveKey: 'report' });
    expect(await touching(() => enqueue(second, first.id))).toEqual({ reply: ['exists', first.id], touched: [] });
    // The caller read no holder, but one holds the key now: it must look again.
    expect(await touching(() => enqueue(second, ''))).toEqual({ reply: ['moved', ''], touched: [] });

    const sameId = newTask({ id: first.id });
    expect(await touching(() => enqueue(sameId))).toEqual({ reply: ['id_taken', first.id], touched: [] });
  });

  it('lets a new task take an exclusive key whose holder has finished', async () => {
    const first = newTask({ exclusiveKey: 'report' });
    await enqueue(first);
    await redis.hset(keys.task(Q, first.id), 'state', 'SUCCESS');
    const next = newTask({ exclusiveKey: 'report' });
    expect(await enqueue(next, first.id)).toEqual(['created', 1]);
    expect(await redis.get(keys.exclusive(Q, 'report'))).toBe(next.id);
    expect(await redis.get(keys.latestForKey(Q, 'report'))).toBe(next.id);
  });
});

describe('enqueue, for the tasks of one turn', () => {
  it('creates each task in order, touching only the KEYS it is given: the queue’s four, then each task’s record, log and idempotency key', async () => {
    const plain = newTask();
    const later = newTask({ notBefore: Date.now() + 60_000 });
    const keyed = newTask({ idempotencyKey: 'order-7' });
    const control = await nextMessage(channels.control(Q));
    const { reply, touched } = await touching(() => enqueueBatch([plain, later, keyed]));
    expect(reply).toEqual(['created', 1, 'created', 1, 'created', 1]);
    expect(touched).toEqual(
      sorted([
        keys.stream(Q),
        keys.scheduled(Q),
        keys.index(Q),
        keys.latest(Q),
        ...[plain, later, keyed].flatMap((t) => [keys.task(Q, t.id), keys.events(Q, t.id)]),
        keys.idempotency(Q, 'order-7'),
      ]),
    );
    expect((await redis.xrange(keys.stream(Q), '-', '+')).map(([, f]) => f[1])).toEqual([plain.id, keyed.id]);
    expect(await redis.zrange(keys.scheduled(Q), 0, -1)).toEqual([`${later.id}\n`]);
    expect(await control()).toBe(`due\n${later.notBefore}`);
    expect(await redis.get(keys.latest(Q))).toBe(keyed.id);
    expect(await redis.get(keys.idempotency(Q, 'order-7'))).toBe(keyed.id);
    for (const t of [plain, later, keyed]) expect(await redis.hget(keys.task(Q, t.id), 'version')).toBe('1');
  });

  it('answers each refused task with why, writing nothing for it, and creates the others', async () => {
    const first = newTask({ idempotencyKey: 'order-7' });
    await enqueueBatch([first]);
    const repeat = newTask({ idempotencyKey: 'order-7' });
    const sameId = newTask({ id: first.id });
    const fresh = newTask();
    const { reply, touched } = await touching(() => enqueueBatch([repeat, sameId, fresh]));
    expect(reply).toEqual(['duplicate', first.id, 'id_taken', first.id, 'created', 1]);
    expect(touched).toEqual(sorted([keys.stream(Q), keys.index(Q), keys.latest(Q), keys.task(Q, fresh.id), keys.events(Q, fresh.id)]));
    expect(await redis.hget(keys.task(Q, first.id), 'version')).toBe('1');
  });

  it('writes nothing when every task is refused', async () => {
    const first = newTask({ idempotencyKey: 'order-7' });
    await enqueueBatch([first]);
    const { reply, touched } = await touching(() => enqueueBatch([newTask({ idempotencyKey: 'order-7' }), newTask({ id: first.id })]));
    expect(reply).toEqual(['duplicate', first.id, 'id_taken', first.id]);
    expect(touched).toEqual([]);
  });
});

describe('the worker’s read (Consumer.readNow)', () => {
  it('hands the worker new messages of its queue, at most as many as asked, and begins none', async () => {
    await redis.xgroup('CREATE', keys.stream(Q), GROUP, '0', 'MKSTREAM');
    const [a, b] = [newTask(), newTask()];
    await enqueueBatch([a, b]);
    expect((await readNow(1)).map((d) => d.id)).toEqual([a.id]);
    expect((await readNow(5)).map((d) => d.id)).toEqual([b.id]);
    expect(await readNow(5)).toEqual([]);
    expect(await redis.hget(keys.task(Q, a.id), 'state')).toBe('PENDING');
    const [pending, , , consumers] = (await redis.xpending(keys.stream(Q), GROUP)) as [number, string, string, [string, string][]];
    expect(pending).toBe(2);
    expect(consumers).toEqual([[WORKER, '2']]);
  });

  it('refuses a queue whose consumer group is missing', async () => {
    await enqueueBatch([newTask()]);
    await expect(readNow(1)).rejects.toThrow('NOGROUP');
  });
});

describe('attempt', () => {
  it('claim: begins each message it is given, replying with what the worker needs to run it', async () => {
    await redis.xgroup('CREATE', keys.stream(Q), GROUP, '0', 'MKSTREAM');
    const a = newTask({ timeLimitMs: 5_000 });
    const b = newTask();
    await enqueueBatch([a, b]);
    const read = await readNow(2);
    const claims = read.map((d, i) => ({ id: d.id, msg: d.msgId, token: `tok-${i}` }));
    const { reply, touched } = await touching(() => attempt({ claims, nonce: 'n1' }));
    const [finished, claimed] = reply as AttemptReply;
    expect(finished).toEqual([]);
    expect(claimed.map(([verdict]) => verdict)).toEqual(['run', 'run']);
    const fields = pairsToHash(claimed[0]![1]!);
    expect(fields).toMatchObject({ name: 'hello', args: '["world"]', kwargs: '{"loud":true}', attempt: '1', max_attempts: '1', time_limit: '5000' });
    expect(fields).not.toHaveProperty('token');
    expect(fields).not.toHaveProperty('created');
    expect(touched).toEqual(
      sorted([keys.replies(Q, WORKER), keys.stats(Q), keys.task(Q, a.id), keys.events(Q, a.id), keys.task(Q, b.id), keys.events(Q, b.id)]),
    );
    expect(await redis.hgetall(keys.task(Q, a.id))).toMatchObject({ state: 'STARTED', token: 'tok-0', worker: WORKER, attempt: '1', version: '2' });
    expect(await redis.hget(keys.task(Q, b.id), 'token')).toBe('tok-1');
  });

  it('finish: ends the attempt its token names, acknowledges the message, frees the exclusive key and starts the result TTL', async () => {
    const { id, msg } = await begun({ exclusiveKey: 'report' });
    const { reply, touched } = await touching(() =>
      attempt({ finishes: [{ id, msg, token: 'tok-1', state: 'SUCCESS', ekey: 'report', fields: ['result', '42'] }] }),
    );
    expect(reply).toEqual([[['ok', 'SUCCESS', 3]], []]);
    expect(touched).toEqual(
      sorted([keys.stream(Q), keys.replies(Q, WORKER), keys.stats(Q), keys.task(Q, id), keys.events(Q, id), keys.exclusive(Q, 'report')]),
    );
    const record = await redis.hgetall(keys.task(Q, id));
    expect(record).toMatchObject({ state: 'SUCCESS', result: '42', version: '3' });
    expect(record).not.toHaveProperty('token');
    expect(await redis.exists(keys.exclusive(Q, 'report'))).toBe(0);
    expect(await redis.pttl(keys.task(Q, id))).toBeGreaterThan(0);
    expect(await redis.pttl(keys.events(Q, id))).toBeGreaterThan(0);
    expect(((await redis.xpending(keys.stream(Q), GROUP)) as [number])[0]).toBe(0);
  });

  it('finish as RETRY schedules the next attempt and keeps the record', async () => {
    const { id, msg } = await begun();
    const nextAt = Date.now() + 30_000;
    const { reply, touched } = await touching(() =>
      attempt({ finishes: [{ id, msg, token: 'tok-1', state: 'RETRY', nextAt, fields: ['err_type', 'Boom', 'err_msg', 'no', 'err_tb', ''] }] }),
    );
    expect(reply).toEqual([[['ok', 'RETRY', 3]], []]);
    expect(touched).toEqual(
      sorted([keys.stream(Q), keys.scheduled(Q), keys.replies(Q, WORKER), keys.stats(Q), keys.task(Q, id), keys.events(Q, id)]),
    );
    expect(await redis.zrange(keys.scheduled(Q), 0, -1, 'WITHSCORES')).toEqual([`${id}\n`, String(nextAt)]);
    expect(await redis.hgetall(keys.task(Q, id))).toMatchObject({ state: 'RETRY', next_at: String(nextAt), err_type: 'Boom' });
    expect(await redis.pttl(keys.task(Q, id))).toBe(-1);
  });

  it('finish with a token that is not the current attempt’s leaves the task and its message alone', async () => {
    const { id, msg } = await begun();
    const { reply, touched } = await touching(() =>
      attempt({ finishes: [{ id, msg, token: 'someone-else', state: 'SUCCESS', fields: ['result', '1'] }] }),
    );
    expect(reply).toEqual([[['stale', 'STARTED']], []]);
    // Only the reply is kept, for a call sent again.
    expect(touched).toEqual([keys.replies(Q, WORKER)]);
    expect(await redis.hget(keys.task(Q, id), 'state')).toBe('STARTED');
  });

  it('finish after a cancel was asked for ends the task REVOKED, whatever the attempt reported', async () => {
    const { id, msg } = await begun();
    await redis.hset(keys.task(Q, id), 'cancel', 'terminate', 'cancel_reason', 'stop it');
    const { reply } = await touching(() => attempt({ finishes: [{ id, msg, token: 'tok-1', state: 'SUCCESS', fields: ['result', '1'] }] }));
    expect(reply).toEqual([[['ok', 'REVOKED', 3]], []]);
    const record = await redis.hgetall(keys.task(Q, id));
    expect(record).toMatchObject({ state: 'REVOKED', err_type: 'TaskRevokedError', err_msg: 'stop it (terminated by force)' });
    expect(record).not.toHaveProperty('result');
  });

  it('finish as PENDING hands the task back to the queue under the same attempt number', async () => {
    const { id, msg } = await begun();
    const { reply, touched } = await touching(() => attempt({ finishes: [{ id, msg, token: 'tok-1', state: 'PENDING' }] }));
    expect(reply).toEqual([[['ok', 'PENDING', 3]], []]);
    expect(touched).toEqual(sorted([keys.stream(Q), keys.replies(Q, WORKER), keys.task(Q, id), keys.events(Q, id)]));
    const record = await redis.hgetall(keys.task(Q, id));
    expect(record).toMatchObject({ state: 'PENDING', attempt: '0' });
    expect(record).not.toHaveProperty('worker');
    const entries = await redis.xrange(keys.stream(Q), '-', '+');
    expect(entries.map(([, f]) => f)).toEqual([
      ['id', id, 'k', ''],
      ['id', id, 'k', ''],
    ]);
    // Read and claimed again, it begins as attempt 1.
    const [d] = await readNow(1);
    const [, claimed] = (await attempt({ claims: [{ id: d!.id, msg: d!.msgId, token: 'tok-2' }] })) as AttemptReply;
    expect([d!.id, claimed[0]![0], pairsToHash(claimed[0]![1]!).attempt]).toEqual([id, 'run', '1']);
  });

  it('claim: revokes a task that expired before it could start, or that was cancelled while its worker was lost', async () => {
    const cancelled = await begun({}, 'tok-old', 'w-old');
    await redis.hset(keys.task(Q, cancelled.id), 'cancel', 'abort', 'cancel_reason', 'no longer wanted');
    const stale = newTask({ expiresAt: Date.now() - 1 });
    await enqueueBatch([stale]);
    const msg = ((await redis.xrevrange(keys.stream(Q), '+', '-', 'COUNT', 1)) as [string, string[]][])[0]![0];
    const { reply } = await touching(() =>
      attempt({
        claims: [
          { id: stale.id, msg, token: 't1' },
          { id: cancelled.id, msg: cancelled.msg, token: 't2' },
        ],
      }),
    );
    expect(reply).toEqual([[], [['expired'], ['revoked']]]);
    expect(await redis.hgetall(keys.task(Q, stale.id))).toMatchObject({ state: 'REVOKED', err_type: 'Expired' });
    expect(await redis.hgetall(keys.task(Q, cancelled.id))).toMatchObject({ state: 'REVOKED', err_msg: 'no longer wanted' });
  });

  it('writes every finish before it begins anything: a slot a finish frees gets its next task in the same call', async () => {
    const first = await begun();
    const next = newTask();
    await enqueueBatch([next]);
    const [d] = await readNow(1);
    const published = await nextMessages(channels.events(Q), 2);
    const reply = (await attempt({
      finishes: [{ id: first.id, msg: first.msg, token: 'tok-1', state: 'SUCCESS', fields: ['result', '1'] }],
      claims: [{ id: d!.id, msg: d!.msgId, token: 'tok-2' }],
    })) as AttemptReply;
    expect(reply[0]).toEqual([['ok', 'SUCCESS', 3]]);
    expect(reply[1].map(([verdict]) => verdict)).toEqual(['run']);
    const [, , , consumers] = (await redis.xpending(keys.stream(Q), GROUP)) as [number, string, string, [string, string][]];
    expect(consumers).toEqual([[WORKER, '1']]);
    const changes = (await published()).map((m) => pairsToHash(JSON.parse(m) as string[]));
    expect(changes.map((c) => [c.id, c.state])).toEqual([
      [first.id, 'SUCCESS'],
      [next.id, 'STARTED'],
    ]);
  });

  it('claim: acknowledges a message whose task is gone or finished, and fails one whose lost worker used its last attempt', async () => {
    const lost = await begun({}, 'tok-old', 'w-old');
    const done = newTask();
    await redis.hset(keys.task(Q, done.id), 'state', 'SUCCESS', 'version', '3');
    const doneMsg = (await redis.xadd(keys.stream(Q), '*', 'id', done.id, 'k', ''))!;
    const goneMsg = (await redis.xadd(keys.stream(Q), '*', 'id', 'contracts-gone', 'k', ''))!;
    await redis.xreadgroup('GROUP', GROUP, 'w-old', 'COUNT', 10, 'STREAMS', keys.stream(Q), '>');
    const { reply, touched } = await touching(() =>
      attempt({
        claims: [
          { id: 'contracts-gone', msg: goneMsg, token: 't1' },
          { id: done.id, msg: doneMsg, token: 't2' },
          { id: lost.id, msg: lost.msg, token: 't3' },
        ],
      }),
    );
    expect(reply).toEqual([[], [['gone'], ['finished', 'SUCCESS'], ['lost']]]);
    expect(touched).toEqual(sorted([keys.stream(Q), keys.replies(Q, WORKER), keys.stats(Q), keys.task(Q, lost.id), keys.events(Q, lost.id)]));
    expect(await redis.hgetall(keys.task(Q, lost.id))).toMatchObject({ state: 'FAILURE', err_type: 'WorkerLostError' });
    expect(await redis.hget(keys.task(Q, done.id), 'version')).toBe('3');
    // Acknowledged: a message the worker was handed but does not run is no longer pending.
    expect(((await redis.xpending(keys.stream(Q), GROUP)) as [number])[0]).toBe(0);
  });

  it('a call sent again gets the reply of its first run and changes nothing; a nonce named as answered is dropped', async () => {
    await redis.xgroup('CREATE', keys.stream(Q), GROUP, '0', 'MKSTREAM');
    const task = newTask();
    await enqueueBatch([task]);
    const [d] = await readNow(1);
    const first = (await attempt({ claims: [{ id: d!.id, msg: d!.msgId, token: 'tok-1' }], nonce: 'n1' })) as AttemptReply;
    expect(first[1].map(([verdict]) => verdict)).toEqual(['run']);

    const again = await touching(() => attempt({ claims: [{ id: d!.id, msg: d!.msgId, token: 'tok-2' }], nonce: 'n1' }));
    expect(again.touched).toEqual([]);
    expect(typeof again.reply).toBe('string');
    expect((JSON.parse(again.reply as string) as unknown[])[1]).toEqual(first[1]);
    expect(await redis.hget(keys.task(Q, task.id), 'token')).toBe('tok-1');

    // A call that does nothing keeps no reply of its own; the answered nonce goes.
    const next = await touching(() => attempt({ nonce: 'n2', answered: ['n1'] }));
    expect(next.reply).toEqual([[], []]);
    expect(next.touched).toEqual([keys.replies(Q, WORKER)]);
    expect(await redis.exists(keys.replies(Q, WORKER))).toBe(0);
  });
});

describe('progress', () => {
  it('records the progress of the current attempt and logs the change, touching only the record and its log', async () => {
    const { id } = await begun();
    const { reply, touched } = await touching(() =>
      call('progress', [keys.task(Q, id), keys.events(Q, id)], ['tok-1', '{"done":3}', Date.now(), channels.events(Q), CAP]),
    );
    expect(reply).toEqual(['ok', 3]);
    expect(touched).toEqual(sorted([keys.task(Q, id), keys.events(Q, id)]));
    expect(await redis.hgetall(keys.task(Q, id))).toMatchObject({ state: 'STARTED', progress: '{"done":3}', version: '3' });
    const log = await redis.xrange(keys.events(Q, id), '3-0', '3-0');
    expect(pairsToHash(log[0]![1]).progress).toBe('{"done":3}');
  });

  it('refuses, writing nothing, an attempt that is not current or a task that is not there', async () => {
    const { id } = await begun();
    const progress = (taskId: string, token: string) =>
      call('progress', [keys.task(Q, taskId), keys.events(Q, taskId)], [token, '{}', Date.now(), channels.events(Q), CAP]);
    expect(await touching(() => progress(id, 'old-token'))).toEqual({ reply: ['stale', 'STARTED'], touched: [] });
    expect(await touching(() => progress(newTaskId(Q), 'tok-1'))).toEqual({ reply: ['stale', 'missing'], touched: [] });
  });
});

describe('cancel', () => {
  /** cancel-8.lua as TaskStore calls it: naming no exclusive key first, then the one the record names. */
  const cancelNaming = (id: string, mode: 'abort' | 'terminate', reason: string, ekey: string) =>
    call('cancel', cancelKeys(Q, id, ekey), [id, Date.now(), mode, reason, channels.events(Q), CAP, TTL, channels.control(Q), ekey]) as Promise<
      [string, string[]?]
    >;
  const cancel = async (id: string, mode: 'abort' | 'terminate', reason = 'not needed') => {
    const reply = await cancelNaming(id, mode, reason, '');
    return reply[0] === 'exclusive' ? cancelNaming(id, mode, reason, String(reply[1])) : reply;
  };

  it('refuses, writing nothing, a call that names another exclusive key than the record’s, and says which', async () => {
    const task = newTask({ notBefore: Date.now() + 60_000, exclusiveKey: 'report' });
    await enqueue(task);
    expect(await touching(() => cancelNaming(task.id, 'abort', 'no', ''))).toEqual({ reply: ['exclusive', 'report'], touched: [] });
    expect(await touching(() => cancelNaming(task.id, 'abort', 'no', 'other'))).toEqual({ reply: ['exclusive', 'report'], touched: [] });
  });

  it('revokes a waiting task at once: out of the scheduled set, its exclusive key freed, its result TTL started', async () => {
    const task = newTask({ notBefore: Date.now() + 60_000, exclusiveKey: 'report' });
    await enqueue(task);
    const { reply, touched } = await touching(() => cancel(task.id, 'abort'));
    expect(reply[0]).toBe('revoked');
    expect(pairsToHash(reply[1]!)).toMatchObject({ state: 'REVOKED', err_type: 'TaskRevokedError', err_msg: 'not needed', version: '2' });
    expect(touched).toEqual(sorted([keys.task(Q, task.id), keys.events(Q, task.id), keys.scheduled(Q), keys.stats(Q), keys.exclusive(Q, 'report')]));
    expect(await redis.zcard(keys.scheduled(Q))).toBe(0);
    expect(await redis.pttl(keys.task(Q, task.id))).toBeGreaterThan(0);
  });

  it('asks a running task’s worker to stop it, escalating abort to terminate and never back', async () => {
    const { id } = await begun();
    let told = await nextMessage(channels.control(Q));
    const asked = await touching(() => cancel(id, 'abort'));
    expect(asked.reply[0]).toBe('requested');
    expect(pairsToHash(asked.reply[1]!)).toMatchObject({ state: 'STARTED', cancel: 'abort', cancel_reason: 'not needed' });
    expect(asked.touched).toEqual(sorted([keys.task(Q, id), keys.events(Q, id)]));
    expect(await told()).toBe(`${id}\nabort`);

    told = await nextMessage(channels.control(Q));
    expect(pairsToHash((await cancel(id, 'terminate'))[1]!).cancel).toBe('terminate');
    expect(await told()).toBe(`${id}\nterminate`);

    told = await nextMessage(channels.control(Q));
    const again = await touching(() => cancel(id, 'abort'));
    expect(again.touched).toEqual([]);
    expect(pairsToHash(again.reply[1]!).cancel).toBe('terminate');
    expect(await told()).toBe(`${id}\nterminate`);
  });

  it('leaves a finished task as it is and answers missing for an unknown one, writing nothing', async () => {
    const { id, msg } = await begun();
    await attempt({ finishes: [{ id, msg, token: 'tok-1', state: 'SUCCESS', fields: ['result', '1'] }] });
    const finished = await touching(() => cancel(id, 'terminate'));
    expect(finished.touched).toEqual([]);
    expect(finished.reply[0]).toBe('finished');
    expect(pairsToHash(finished.reply[1]!).state).toBe('SUCCESS');
    expect(await touching(() => cancel(newTaskId(Q), 'abort'))).toEqual({ reply: ['missing'], touched: [] });
  });
});

describe('workflow_start and a workflow’s steps (workflow.lua)', () => {
  // The one exception to KEYS-only: a workflow names the keys of the tasks it creates, and
  // its own, from its plan's meta (ARCHITECTURE.md says what a Redis Cluster does with them).
  const store = () => new TaskStore(redis, registry, { ...LIMITS, maxPayloadBytes: 1 << 20 });
  const add = (...args: number[]) => ({ kind: 'task' as const, task: { name: 'add', queue: Q, args } });

  it('creates the workflow and its first step, touching beyond its KEYS only the keys its plan names, all in its queue’s slot', async () => {
    const { touched, reply } = await touching(() => store().workflows.start({ queue: Q, root: { kind: 'chain', steps: [add(1, 1), add(2)] } }));
    const id = reply.task.id;
    const first = (await redis.lrange(keys.workflowChildren(Q, id), 0, -1))[0]!;
    // The store adds the queue to the set of queues in use (once per process), apart from the script.
    expect(touched.filter((k) => k !== keys.queues())).toEqual(
      sorted([
        keys.task(Q, id),
        keys.events(Q, id),
        keys.index(Q),
        keys.latest(Q),
        keys.workflowPlan(Q, id),
        keys.workflowChildren(Q, id),
        keys.workflowLive(Q, id),
        keys.task(Q, first),
        keys.events(Q, first),
        keys.stream(Q),
      ]),
    );
    expect(touched.filter((k) => k !== keys.queues()).every((k) => k.startsWith(`taskwire:{${Q}}:`))).toBe(true);
  });

  it('a cancel of the workflow touches only the KEYS it is given', async () => {
    const tasks = store();
    const { task } = await tasks.workflows.start({ queue: Q, root: { kind: 'group', steps: [add(1, 1), add(2, 2)] } });
    const { touched } = await touching(() =>
      call('cancel', cancelKeys(Q, task.id, ''), [task.id, Date.now(), 'abort', 'no', channels.events(Q), CAP, TTL, channels.control(Q), '']),
    );
    expect(await redis.hget(keys.task(Q, task.id), 'state')).toBe('REVOKED');
    expect(touched).toContain(keys.workflowPlan(Q, task.id));
  });
});

describe('reap', () => {
  const reap = (idleMs: number, self: string) => call('reap', [keys.stream(Q)], [GROUP, idleMs, self]) as Promise<string[]>;
  const consumerNames = async () => ((await redis.xinfo('CONSUMERS', keys.stream(Q), GROUP)) as string[][]).map((c) => pairsToHash(c).name).sort();

  it('removes the idle consumers that hold nothing, never the caller nor one with a pending message', async () => {
    await redis.xgroup('CREATE', keys.stream(Q), GROUP, '0', 'MKSTREAM');
    await redis.xadd(keys.stream(Q), '*', 'id', 't1', 'k', '');
    await redis.xreadgroup('GROUP', GROUP, 'busy', 'COUNT', 1, 'STREAMS', keys.stream(Q), '>');
    await redis.xgroup('CREATECONSUMER', keys.stream(Q), GROUP, 'stopped');
    await redis.xgroup('CREATECONSUMER', keys.stream(Q), GROUP, 'me');
    const { reply, touched } = await touching(() => reap(0, 'me'));
    expect(reply).toEqual(['stopped']);
    expect(touched).toEqual([keys.stream(Q)]);
    expect(await consumerNames()).toEqual(['busy', 'me']);
  });

  it('removes nothing not idle for long enough, and nothing from a stream without its group', async () => {
    await redis.xgroup('CREATE', keys.stream(Q), GROUP, '0', 'MKSTREAM');
    await redis.xgroup('CREATECONSUMER', keys.stream(Q), GROUP, 'stopped');
    expect(await touching(() => reap(3_600_000, 'me'))).toEqual({ reply: [], touched: [] });
    await redis.flushall();
    expect(await touching(() => reap(0, 'me'))).toEqual({ reply: [], touched: [] });
  });
});

describe('the script loader', () => {
  it('refuses a call with the wrong number of keys before it reaches Redis', async () => {
    await redis.zadd(keys.scheduled('contracts'), 1, 'a\n');
    expect(() => runScript(redis, 'promote', [keys.scheduled('contracts')], [10, 10])).toThrow('script promote takes 2 keys, got 1');
    expect(await redis.zcard(keys.scheduled('contracts'))).toBe(1);
    expect(await redis.exists(keys.stream('contracts'))).toBe(0);
    expect(() => runScript(redis, 'attempt', [], [])).toThrow('script attempt takes at least one key, got none');
  });
});
