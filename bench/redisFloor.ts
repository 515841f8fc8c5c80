/**
 * What Redis itself spends per task: the least work the design brief asks of Redis, against
 * taskwire's own scripts, on one redis-server started for the run (with a subscriber of
 * both queues' change channels attached, as an API server with an open WatchEvents has). No worker or API process runs, so
 * each figure is Redis's time alone, warm, one script call at a time:
 *
 * - create: a record, its log's first entry, its publish and its queue entry, for N tasks
 *   in one script call (no per-call cost at all), against `enqueue` as `StartMany`
 *   calls it (500 tasks per call);
 * - claim + finish: two changes of the record, each checked, versioned, logged and
 *   published, plus the read, the acknowledgement and the result TTL, for N tasks in one
 *   script call (log entries holding only the fields a change wrote, or the whole record
 *   read back as taskwire's do), against the worker's `attempt` script taking and finishing
 *   50 tasks per call, as a busy worker does.
 *
 * A figure of Redis time per task bounds the rate of anything that goes through this one
 * single-threaded Redis: 1 s / (µs per task). `npm run bench:floor`.
 */
import type { Redis } from 'ioredis';
import { Consumer, ensureGroups } from '../src/broker/consumer.js';
import { connectReady } from '../src/redis.js';
import { startRedisServer } from '../src/redisServer.js';
import { AttemptStore, type Delivery, type Taken } from '../src/store/attemptStore.js';
import { CONSUMER_GROUP, channels, keys, taskKeyParts } from '../src/store/keys.js';
import { installScripts } from '../src/store/scripts.js';
import { TaskStore } from '../src/store/taskStore.js';
import { spread } from './lib/stats.js';
import registry from './tasks.js';

const N = 5000;
const ROUNDS = 3;
const QUEUE = 'default';
/** The queue the minimal scripts write, apart from taskwire's own. */
const MIN_QUEUE = 'floor';
const LIMITS = { resultTtlMs: 86_400_000, eventLogCap: 1000 };
const TTL_MS = LIMITS.resultTtlMs;
const LOG_CAP = LIMITS.eventLogCap;

/** The fields a new no-op task's record has (as taskwire writes them), for the minimal scripts. */
const RECORD = [
  'id',
  '0190a8c4-1111-7aaa-8bbb-123456789abc',
  'name',
  'noop',
  'queue',
  QUEUE,
  'state',
  'PENDING',
  'version',
  '1',
  'attempt',
  '0',
  'max_attempts',
  '1',
  'created',
  '1764130000000',
  'updated',
  '1764130000000',
  'args',
  '[]',
  'kwargs',
  '{}',
  'backoff_initial',
  '1000',
  'backoff_max',
  '60000',
  'traceparent',
  '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
];

const lua = (s: string) => JSON.stringify(s);
const recordTable = `{${RECORD.map(lua).join(',')}}`;

/** KEYS[1] the queue stream; ARGV[1] the events channel, ARGV[2] the record key prefix,
 * ARGV[3] the event log suffix (store/keys.ts). The design's minimum to create N tasks. */
const MIN_CREATE = `
local rec = ${recordTable}
for i = 1, ${N} do
  local k = ARGV[2] .. i
  redis.call('HSET', k, unpack(rec))
  redis.call('XADD', k .. ARGV[3], 'MAXLEN', '~', ${LOG_CAP}, '1-0', unpack(rec))
  redis.call('PUBLISH', ARGV[1], 'x')
  redis.call('XADD', KEYS[1], '*', 'id', i)
end
return 1`;

/** The design's minimum to claim and finish the N tasks MIN_CREATE made (the same keys and
 * arguments); `snapshot`: each log entry and publish carries the whole record read back, as
 * taskwire's do. */
const minClaimFinish = (snapshot: boolean) => {
  const log = (fields: string, version: number) =>
    snapshot
      ? `local flat = redis.call('HGETALL', k)
  redis.call('XADD', k .. ARGV[3], 'MAXLEN', '~', ${LOG_CAP}, '${version}-0', unpack(flat))
  redis.call('PUBLISH', ARGV[1], cjson.encode(flat))`
      : `redis.call('XADD', k .. ARGV[3], 'MAXLEN', '~', ${LOG_CAP}, '${version}-0', ${fields})
  redis.call('PUBLISH', ARGV[1], 'x')`;
  return `
local now = '1764130000100'
local ids = {}
for i = 1, ${N} do
  local k = ARGV[2] .. i
  if i % 100 == 1 then
    local read = redis.call('XREADGROUP', 'GROUP', '${CONSUMER_GROUP}', 'w', 'COUNT', 100, 'STREAMS', KEYS[1], '>')
    for j, e in ipairs(read[1][2]) do ids[i + j - 1] = e[1] end
  end
  redis.call('HMGET', k, 'state', 'attempt', 'max_attempts', 'expires', 'cancel', 'version')
  redis.call('HSET', k, 'version', '2', 'state', 'STARTED', 'attempt', '1', 'worker', 'w', 'token', 't', 'started', now, 'updated', now)
  ${log(`'version', '2', 'state', 'STARTED', 'attempt', '1', 'worker', 'w', 'started', now, 'updated', now`, 2)}
  redis.call('HMGET', k, 'state', 'token', 'cancel', 'version')
  redis.call('HSET', k, 'version', '3', 'state', 'SUCCESS', 'result', 'null', 'finished', now, 'updated', now)
  redis.call('HDEL', k, 'token')
  ${log(`'version', '3', 'state', 'SUCCESS', 'result', 'null', 'finished', now, 'updated', now`, 3)}
  redis.call('XACK', KEYS[1], '${CONSUMER_GROUP}', ids[i])
  redis.call('PEXPIRE', k, ${TTL_MS})
  redis.call('PEXPIRE', k .. ARGV[3], ${TTL_MS})
end
return 1`;
};

/** Redis's time in scripts since the last reset, µs. */
async function scriptUsec(redis: Redis): Promise<number> {
  const info = await redis.info('commandstats');
  let usec = 0;
  for (const m of info.matchAll(/cmdstat_(?:eval|evalsha|xreadgroup):calls=\d+,usec=(\d+)/g)) usec += Number(m[1]);
  return usec;
}

/** µs of Redis script time per task that `work` costs. */
async function perTask(redis: Redis, work: () => Promise<unknown>): Promise<number> {
  await redis.config('RESETSTAT');
  await work();
  return (await scriptUsec(redis)) / N;
}

async function fresh(redis: Redis): Promise<void> {
  await redis.flushall();
  await ensureGroups(redis, [MIN_QUEUE, QUEUE]);
}

/** Start N tasks through taskwire's own Start path (500 per enqueue call, as StartMany). */
async function createReal(store: TaskStore): Promise<void> {
  for (let done = 0; done < N; done += 500) {
    await Promise.all(Array.from({ length: 500 }, () => store.start({ name: 'noop' })));
  }
}

/** Take and finish every queued task as a busy worker does (AttemptStore): each turn
 * finishes the tasks the last one began, claims the 50 messages the last one read, and reads
 * 50 more, in one write. */
async function claimFinishReal(redis: Redis): Promise<void> {
  const attempts = new AttemptStore(redis, 'floor-worker', { ...LIMITS, leaseMs: 30_000 });
  const reader = new Consumer(redis, 'floor-worker', [QUEUE]);
  let held: Taken[] = [];
  let read: Delivery[] = [];
  for (let turn = 0; ; turn++) {
    const finishes = held.map((t) => attempts.finish(t.d, t.token, 'SUCCESS', { result: 'null' }));
    const claims = read.map(async (d, i): Promise<Taken> => {
      const token = `t${turn}-${i}`;
      return { d, token, claim: await attempts.claim(d, token) };
    });
    const next = attempts.take(QUEUE, () => reader.readNow(redis, QUEUE, 50));
    for (const r of await Promise.all(finishes)) if (!r.written) throw new Error(`a finish was refused: the task is ${r.state}`);
    held = await Promise.all(claims);
    read = await next;
    if (turn > 0 && held.length === 0 && read.length === 0) return;
  }
}

async function main(): Promise<void> {
  const server = await startRedisServer();
  const redis = await connectReady(server.url, 'floor');
  const subscriber = await connectReady(server.url, 'floor-subscriber');
  try {
    installScripts(redis);
    for (const q of [MIN_QUEUE, QUEUE]) await subscriber.ssubscribe(channels.events(q));
    subscriber.on('smessage', () => {});
    const store = new TaskStore(redis, registry, { ...LIMITS, maxPayloadBytes: 1 << 20 });
    const minKeys = [keys.stream(MIN_QUEUE)];
    const { task, eventsSuffix } = taskKeyParts(MIN_QUEUE);
    const minArgs = [channels.events(MIN_QUEUE), task, eventsSuffix];
    const minimal = (script: string) => () => redis.eval(script, minKeys.length, ...minKeys, ...minArgs);
    const rows: Record<string, number[]> = {};
    const add = (row: string, v: number) => (rows[row] ??= []).push(v);
    for (let round = 0; round < ROUNDS; round++) {
      await fresh(redis);
      add('create: the design minimum', await perTask(redis, minimal(MIN_CREATE)));
      add('claim + finish: the design minimum, log entries of the fields written', await perTask(redis, minimal(minClaimFinish(false))));
      await fresh(redis);
      await minimal(MIN_CREATE)();
      add('claim + finish: the design minimum, log entries of the whole record', await perTask(redis, minimal(minClaimFinish(true))));
      await fresh(redis);
      add('create: taskwire (enqueue, 500 per call)', await perTask(redis, () => createReal(store)));
      add('claim + finish: taskwire (attempt, 50 per call)', await perTask(redis, () => claimFinishReal(redis)));
    }
    const width = Math.max(...Object.keys(rows).map((r) => r.length));
    process.stdout.write(`Redis time per task, µs (median of ${ROUNDS} rounds of ${N} tasks; warm, one call at a time)\n`);
    for (const [row, values] of Object.entries(rows)) {
      const m = spread(values).median;
      process.stdout.write(`${row.padEnd(width)}  ${m.toFixed(1).padStart(6)}   at most ${Math.round(1e6 / m).toLocaleString('en-US')} tasks/s\n`);
    }
  } finally {
    subscriber.disconnect();
    redis.disconnect();
    await server.stop();
  }
}

await main();
