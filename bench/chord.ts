/**
 * A chord of N members (default 10,000) on taskwire next to BullMQ's FlowProducer with N
 * children on the same Redis: from the call that starts it to its result, and the start
 * call alone. Each side runs one worker process (concurrency 16); taskwire also its API
 * server. Members add two numbers; the body (taskwire: `tsum` over the header's results in
 * order; BullMQ: the parent job over `getChildrenValues()`) sums them.
 *
 *   node --import tsx bench/chord.ts [--members 10000] [--rounds 3]
 */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { FlowProducer, QueueEvents, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { createTaskwireClient } from '../src/client/index.js';
import { connectReady } from '../src/redis.js';
import { startRedisServer, type RedisServer } from '../src/redisServer.js';
import { spawnNode, stopAllProcs } from './lib/proc.js';

const EXT = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
const LOADER = EXT === '.ts' ? ['--import', 'tsx'] : [];
const CLI = fileURLToPath(new URL(`../src/cli/main${EXT}`, import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const BULL_QUEUE = 'chord-bench';
const CONCURRENCY = 16;

const { values: flags } = parseArgs({
  options: {
    members: { type: 'string' },
    rounds: { type: 'string' },
    role: { type: 'string' },
    url: { type: 'string' },
  },
});
const N = Number(flags.members ?? 10_000);
const ROUNDS = Number(flags.rounds ?? 3);
const expected = N * (N - 1);

const connectionOf = (url: string) => {
  const { hostname, port } = new URL(url);
  return { host: hostname, port: Number(port), maxRetriesPerRequest: null };
};

/** The BullMQ worker, in a process of its own as taskwire's is. */
async function bullWorker(url: string): Promise<void> {
  const worker = new Worker(
    BULL_QUEUE,
    async (job) => {
      if (job.name === 'add') return (job.data.x as number) + (job.data.y as number);
      const values = Object.values(await job.getChildrenValues()) as number[];
      return values.reduce((s, v) => s + v, 0);
    },
    { connection: connectionOf(url), concurrency: CONCURRENCY },
  );
  await worker.waitUntilReady();
  process.stdout.write('READY\n');
  await new Promise<void>((resolve) => process.once('SIGTERM', resolve));
  await worker.close();
}

interface Run {
  startMs: number;
  totalMs: number;
}

async function taskwireRun(redisUrl: string): Promise<Run> {
  const env = { REDIS_URL: redisUrl, TASKWIRE_LOG_LEVEL: 'warn' };
  const api = spawnNode('taskwire serve', [...LOADER, CLI, 'serve', '--host', '127.0.0.1', '--port', '0'], env);
  const port = (await api.waitFor(/API listening on [^\s]+:(\d+)/))[1];
  const worker = spawnNode('taskwire worker', [...LOADER, CLI, 'worker', '-c', String(CONCURRENCY)], env);
  await worker.waitFor(/runs queues/);
  const tw = createTaskwireClient({ baseUrl: `http://127.0.0.1:${port}` });
  const flow = tw.chord(
    Array.from({ length: N }, (_, k) => tw.sig('add', k, k)),
    tw.sig('tsum'),
  );
  const t0 = performance.now();
  const wf = await flow.start();
  const started = performance.now();
  const result = await tw.wait(wf.id);
  const t1 = performance.now();
  if (result !== expected) throw new Error(`taskwire's chord returned ${String(result)}, not ${expected}`);
  await Promise.all([worker.stop(), api.stop()]);
  return { startMs: started - t0, totalMs: t1 - t0 };
}

async function bullRun(redisUrl: string): Promise<Run> {
  const worker = spawnNode('bullmq worker', [...LOADER, SELF, '--role', 'bullmq-worker', '--url', redisUrl]);
  await worker.waitFor(/^READY$/m);
  const connection = connectionOf(redisUrl);
  const producer = new FlowProducer({ connection });
  const events = new QueueEvents(BULL_QUEUE, { connection });
  await events.waitUntilReady();
  const t0 = performance.now();
  const tree = await producer.add({
    name: 'tsum',
    queueName: BULL_QUEUE,
    children: Array.from({ length: N }, (_, k) => ({ name: 'add', queueName: BULL_QUEUE, data: { x: k, y: k } })),
  });
  const started = performance.now();
  const result = await tree.job.waitUntilFinished(events, 600_000);
  const t1 = performance.now();
  if (result !== expected) throw new Error(`BullMQ's flow returned ${String(result)}, not ${expected}`);
  await Promise.all([producer.close(), events.close(), worker.stop()]);
  return { startMs: started - t0, totalMs: t1 - t0 };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (xs: number[]) => `${median(xs).toFixed(0)} ms (${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)})`;

async function main(): Promise<void> {
  const server: RedisServer = await startRedisServer();
  const redis: Redis = await connectReady(server.url, 'bench');
  const runs: Record<'taskwire' | 'bullmq', Run[]> = { taskwire: [], bullmq: [] };
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? (['taskwire', 'bullmq'] as const) : (['bullmq', 'taskwire'] as const);
      for (const system of order) {
        await redis.flushall();
        const run = system === 'taskwire' ? await taskwireRun(server.url) : await bullRun(server.url);
        runs[system].push(run);
        process.stdout.write(`round ${round + 1} ${system}: start ${run.startMs.toFixed(0)} ms, to the result ${run.totalMs.toFixed(0)} ms\n`);
      }
    }
  } finally {
    await stopAllProcs();
    await redis.quit();
    await server.stop();
  }
  process.stdout.write(`\nchord of ${N} members, ${ROUNDS} round(s), medians (min–max); worker concurrency ${CONCURRENCY}\n`);
  for (const system of ['taskwire', 'bullmq'] as const) {
    const r = runs[system];
    process.stdout.write(`${system.padEnd(9)} start ${fmt(r.map((x) => x.startMs))}   start → result ${fmt(r.map((x) => x.totalMs))}\n`);
  }
}

if (flags.role === 'bullmq-worker') {
  bullWorker(flags.url!).then(
    () => process.exit(0),
    (err: Error) => {
      process.stderr.write(`bullmq worker failed: ${err.stack ?? err.message}\n`);
      process.exit(1);
    },
  );
} else {
  main().then(
    () => process.exit(0),
    (err: Error) => {
      process.stderr.write(`chord bench failed: ${err.stack ?? err.message}\n`);
      process.exit(1);
    },
  );
}
