/**
 * What Redis itself spends per task: the least work the design brief asks of Redis, against
 * taskwire's own scripts, on one redis-server started for the run (with a pattern
 * subscriber attached, as a running API server has). No worker or API process runs, so
 * each figure is Redis's time alone, warm, one script call at a time:
 *
 * - create: a record, its log's first entry, its publish and its queue entry, for N tasks
 *   in one script call (no per-call cost at all), against `enqueue_batch` as `StartMany`
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
import { connectReady } from '../src/redis.js';
import { startRedisServer } from '../src/redisServer.js';
import { ALL_EVENTS_PATTERN, CONSUMER_GROUP, channels, keys, taskKeyParts } from '../src/store/keys.js';
import { installScripts, runScript } from '../src/store/scripts.js';
import { TaskStore } from '../src/store/taskStore.js';
import registry from './tasks.js';

const N = 5000;
const ROUNDS = 3;
const QUEUE = 'default';
const TTL_MS = 86_400_000;
const LOG_CAP = 1000;

/** The fields a new no-op task's record has (as taskwire writes them), for the minimal scripts. */
const RECORD = [
  'id', '0190a8c4-1111-7aaa-8bbb-123456789abc', 'name', 'noop', 'queue', QUEUE, 'state', 'PENDING',
  'version', '1', 'attempt', '0', 'max_attempts', '1', 'created', '1764130000000',
  'updated', '1764130000000', 'args', '[]', 'kwargs', '{}', 'backoff_initial', '1000',
  'backoff_max', '60000', 'traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
];

const lua = (s: string) => JSON.stringify(s);
const recordTable = `{${RECORD.map(lua).join(',')}}`;

/** KEYS: stream, channel. The design's minimum to create N tasks. */
const MIN_CREATE = `
local rec = ${recordTable}
for i = 1, ${N} do
  local k = 'taskwire:{f}:t:' .. i
  redis.call('HSET', k, unpack(rec))
  redis.call('XADD', k .. ':events', 'MAXLEN', '~', ${LOG_CAP}, '1-0', unpack(rec))
  redis.call('PUBLISH', ARGV[1], 'x')
  redis.call('XADD', KEYS[1], '*', 'id', i)
end
return 1`;

/** The design's minimum to claim and finish the N tasks MIN_CREATE made; `snapshot`: each
 * log entry and publish carries the whole record read back, as taskwire's do. */
const minClaimFinish = (snapshot: boolean) => {
  const log = (fields: string, version: number) =>
    snapshot
      ? `local flat = redis.call('HGETALL', k)
  redis.call('XADD', k .. ':events', 'MAXLEN', '~', ${LOG_CAP}, '${version}-0', unpack(flat))
  redis.call('PUBLISH', ARGV[1], cjson.encode(flat))`
      : `redis.call('XADD', k .. ':events', 'MAXLEN', '~', ${LOG_CAP}, '${version}-0', ${fields})
  redis.call('PUBLISH', ARGV[1], 'x')`;
  return `
local now = '1764130000100'
local ids = {}
for i = 1, ${N} do
  local k = 'taskwire:{f}:t:' .. i
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
  redis.call('PEXPIRE', k .. ':events', ${TTL_MS})
end
return 1`;
};

/** Redis's time in scripts since the last reset, µs. */
async function scriptUsec(redis: Redis): Promise<number> {
  const info = await redis.info('commandstats');
  let usec = 0;
  for (const m of info.matchAll(/cmdstat_(?:eval|evalsha):calls=\d+,usec=(\d+)/g)) usec += Number(m[1]);
  return usec;
}

/** µs of Redis script time per task that `work` costs. */
async function perTask(redis: Redis, work: () => Promise<unknown>): Promise<number> {
  await redis.config('RESETSTAT');
  await work();
  return (await scriptUsec(redis)) / N;
}

async function fresh(redis: Redis, stream: string): Promise<void> {
  await redis.flushall();
  await redis.xgroup('CREATE', stream, CONSUMER_GROUP, '$', 'MKSTREAM');
}

/** Start N tasks through taskwire's own Start path (500 per enqueue_batch call, as StartMany). */
async function createReal(store: TaskStore): Promise<void> {
  for (let done = 0; done < N; done += 500) {
    await Promise.all(Array.from({ length: 500 }, () => store.start({ name: 'noop' })));
  }
}

/** Take and finish every queued task with the worker's script, 50 per call. */
async function claimFinishReal(redis: Redis): Promise<void> {
  const parts = taskKeyParts(QUEUE);
  const keyList = [keys.stream(QUEUE), keys.scheduled(QUEUE)];
  let held: { msg: string; id: string; token: string }[] = [];
  for (let call = 0; ; call++) {
    const tokens = Array.from({ length: 50 }, (_, i) => `t${call}-${i}`);
    const args: (string | number)[] = [
      CONSUMER_GROUP, 'w', Date.now(), channels.events(QUEUE), LOG_CAP, TTL_MS,
      held.length, 0, tokens.length, parts.task, parts.eventsSuffix, parts.exclusive,
    ];
    for (const t of held) args.push(t.id, t.msg, t.token, 'SUCCESS', 0, '', 2, 'result', 'null');
    args.push(...tokens);
    const [finished, , taken] = (await runScript(redis, 'attempt', keyList, args)) as [unknown[][], unknown, string[][]];
    const refused = finished.find((f) => f[0] !== 'ok');
    if (refused) throw new Error(`a finish was refused: ${JSON.stringify(refused)}`);
    held = taken.map(([msg, id], i) => ({ msg: msg!, id: id!, token: tokens[i]! }));
    if (held.length === 0) return;
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const server = await startRedisServer();
  const redis = await connectReady(server.url, 'floor');
  const subscriber = await connectReady(server.url, 'floor-subscriber');
  try {
    installScripts(redis);
    await subscriber.psubscribe(ALL_EVENTS_PATTERN);
    subscriber.on('pmessage', () => {});
    const store = new TaskStore(redis, registry, { resultTtlMs: TTL_MS, eventLogCap: LOG_CAP, maxPayloadBytes: 1 << 20 });
    const minStream = 'taskwire:{f}:stream';
    const rows: Record<string, number[]> = {};
    const add = (row: string, v: number) => (rows[row] ??= []).push(v);
    for (let round = 0; round < ROUNDS; round++) {
      await fresh(redis, minStream);
      add('create: the design minimum', await perTask(redis, () => redis.eval(MIN_CREATE, 1, minStream, 'taskwire:{f}:events')));
      add('claim + finish: the design minimum, log entries of the fields written', await perTask(redis, () => redis.eval(minClaimFinish(false), 1, minStream, 'taskwire:{f}:events')));
      await fresh(redis, minStream);
      await redis.eval(MIN_CREATE, 1, minStream, 'taskwire:{f}:events');
      add('claim + finish: the design minimum, log entries of the whole record', await perTask(redis, () => redis.eval(minClaimFinish(true), 1, minStream, 'taskwire:{f}:events')));
      await fresh(redis, keys.stream(QUEUE));
      add('create: taskwire (enqueue_batch, 500 per call)', await perTask(redis, () => createReal(store)));
      add('claim + finish: taskwire (attempt, 50 per call)', await perTask(redis, () => claimFinishReal(redis)));
    }
    const width = Math.max(...Object.keys(rows).map((r) => r.length));
    process.stdout.write(`Redis time per task, µs (median of ${ROUNDS} rounds of ${N} tasks; warm, one call at a time)\n`);
    for (const [row, values] of Object.entries(rows)) {
      const m = median(values);
      process.stdout.write(`${row.padEnd(width)}  ${m.toFixed(1).padStart(6)}   at most ${Math.round(1e6 / m).toLocaleString('en-US')} tasks/s\n`);
    }
  } finally {
    subscriber.disconnect();
    redis.disconnect();
    await server.stop();
  }
}

await main();
