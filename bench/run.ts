/**
 * taskwire against BullMQ on the same Redis, in the same run, alternating, several rounds.
 *
 *   npm run bench                  # full run (~6 min on 2 cores)
 *   npm run bench -- --quick       # one short round (~1 min), a smoke test of the suite
 *   npm run bench -- --rounds 5 --only drain,inline,start
 *   npm run bench -- --profile     # also write CPU profiles of the taskwire worker, API and client
 *
 * It starts its own redis-server (FLUSHALL between runs), runs every role in a process of
 * its own (workers, API server, producers; this process only enqueues for the drains and
 * watches Redis), prints a table of medians with min–max over the rounds and the
 * taskwire/BullMQ ratio, and writes the raw figures to bench/results/.
 * docs/performance.md explains each figure.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { connectReady } from '../src/redis.js';
import { startRedisServer, type RedisServer } from '../src/redisServer.js';
import { keys } from '../src/store/keys.js';
import { TaskStore } from '../src/store/taskStore.js';
import { loadRegistry } from '../src/tasks/define.js';
import { cpuMs, spawnNode, stopAllProcs, type Proc } from './lib/proc.js';
import { inFlight, latencyPercentiles, spread, type Spread } from './lib/stats.js';

const ROOT = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? '../' : '../../', import.meta.url));
const HERE = fileURLToPath(new URL('./', import.meta.url));
const EXT = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
/** Compiled (npm run build) or TypeScript through tsx: the same way for both systems. */
const LOADER = EXT === '.ts' ? ['--import', 'tsx'] : [];
const CLI = fileURLToPath(new URL(`../src/cli/main${EXT}`, import.meta.url));
const TASKS = `${HERE}tasks${EXT}`;
const BULLMQ = `${HERE}peers/bullmq${EXT}`;
const TW_CLIENT = `${HERE}peers/taskwireClient${EXT}`;
const QUEUE = 'default';
const BULL_QUEUE = 'bench';

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    rounds: { type: 'string' },
    only: { type: 'string' },
    profile: { type: 'boolean' },
  },
});
const quick = flags.quick ?? false;
const P = {
  rounds: Number(flags.rounds ?? (quick ? 1 : 3)),
  drainTasks: quick ? 5_000 : 20_000,
  drainConcurrency: [1, 16, 100],
  startTasks: quick ? 5_000 : 20_000,
  startInflight: 64,
  batchTasks: quick ? 20_000 : 50_000,
  batchSize: 500,
  batchInflight: 4,
  e2eRate: 200,
  e2eSeconds: quick ? 3 : 5,
  /** Long enough for both systems to reach their steady latency: a fresh taskwire API
   * and worker run their first ~1,000 tasks at about twice their later latency (JIT). */
  e2eWarmup: quick ? 3 : 5,
  /** The first second after start is reported on its own rows (cold). */
  e2eColdSeconds: 1,
  e2eConcurrency: 16,
  fanout: [1_000, 10_000],
  fanoutConnections: 10,
  fanoutConcurrency: 16,
};
const only = flags.only ? new Set(flags.only.split(',')) : undefined;
const want = (s: string) => !only || only.has(s);
const profileDir = `${ROOT}bench/results/profiles`;

type System = 'taskwire' | 'bullmq';
/** figure → system → one value per round */
const figures = new Map<string, Record<System, number[]>>();
function record(figure: string, system: System, value: number): void {
  if (!figures.has(figure)) figures.set(figure, { taskwire: [], bullmq: [] });
  figures.get(figure)![system].push(value);
}

let redisServer: RedisServer;
let redis: Redis;
let store: TaskStore;
const log = (m: string) => process.stderr.write(`${m}\n`);
const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------------------
// processes

function twEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    REDIS_URL: redisServer.url,
    TASKWIRE_TASKS: TASKS,
    TASKWIRE_LEASE: '20s',
    // The default stream limits guard a shared server (10,000 streams, 100 watches per
    // connection); the benchmark clients open many watches over few connections on purpose.
    TASKWIRE_MAX_STREAMS: '100000',
    TASKWIRE_MAX_WATCHERS_PER_CONNECTION: '100000',
    ...extra,
  };
}

function nodeArgs(script: string, role: string): string[] {
  const prof = flags.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${role}-${Date.now()}.cpuprofile`] : [];
  return [...LOADER, ...prof, script];
}

/** The Node flags `taskwire <command>` (bin/taskwire.js) starts its process with. */
function nodeFlags(command: 'worker' | 'serve'): string[] {
  return (JSON.parse(readFileSync(`${ROOT}bin/node-flags.json`, 'utf8')) as Record<string, string[]>)[command] ?? [];
}

async function startWorker(system: System, concurrency: number, tag: string): Promise<{ proc: Proc; readyMs: number }> {
  const t0 = performance.now();
  let proc: Proc;
  if (system === 'taskwire') {
    proc = spawnNode('taskwire worker', [...nodeFlags('worker'), ...nodeArgs(CLI, `worker-${tag}`), 'worker', '-c', String(concurrency)], twEnv());
    await proc.waitFor(/runs queues/);
  } else {
    proc = spawnNode('bullmq worker', [...LOADER, BULLMQ, JSON.stringify({ mode: 'worker', url: redisServer.url, queue: BULL_QUEUE, concurrency })]);
    await proc.waitFor(/^READY$/m);
  }
  return { proc, readyMs: performance.now() - t0 };
}

async function startApi(tag: string, env: Record<string, string> = {}): Promise<{ proc: Proc; baseUrl: string }> {
  const proc = spawnNode(
    'taskwire serve',
    [...nodeFlags('serve'), ...nodeArgs(CLI, `api-${tag}`), 'serve', '--host', '127.0.0.1', '--port', '0'],
    twEnv(env),
  );
  const m = await proc.waitFor(/API listening on [^\s]+:(\d+)/);
  return { proc, baseUrl: `http://127.0.0.1:${m[1]}` };
}

function client(system: System, params: Record<string, unknown>): Proc {
  if (system === 'taskwire') return spawnNode('taskwire client', [...nodeArgs(TW_CLIENT, `client-${String(params.mode)}`), JSON.stringify(params)]);
  return spawnNode('bullmq producer', [...LOADER, BULLMQ, JSON.stringify({ url: redisServer.url, queue: BULL_QUEUE, ...params })]);
}

/** A client's failure comes with what the API server printed, which may say why. */
async function withServerOutput<T>(result: Promise<T>, server: Proc | undefined): Promise<T> {
  try {
    return await result;
  } catch (err) {
    if (!server) throw err;
    throw new Error(`${(err as Error).message}\n${server.name} output (last 3,000 characters):\n${server.output().slice(-3000)}`);
  }
}

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 180_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Every task of the queue was delivered and acknowledged: the consumer group's lag and
 * pending count are 0 (acknowledged entries stay in the stream until a worker trims it). */
async function taskwireDrained(queue: string): Promise<boolean> {
  const groups = (await redis.xinfo('GROUPS', keys.stream(queue))) as unknown[][];
  return groups.some((g) => {
    const info = new Map<unknown, unknown>();
    for (let i = 0; i + 1 < g.length; i += 2) info.set(g[i], g[i + 1]);
    return info.get('lag') === 0 && info.get('pending') === 0;
  });
}

// ---------------------------------------------------------------------------------------
// scenarios

/** Pre-enqueue `n` no-op tasks, start one worker, and time the drain from the first task
 * started to the last finished, as the records in Redis say. */
async function drain(system: System, concurrency: number, inline = false): Promise<void> {
  const n = P.drainTasks;
  const name = inline ? 'noopInline' : 'noop';
  await redis.flushall();
  let ids: string[] = [];
  let queue: Queue | undefined;
  if (system === 'taskwire') {
    ids = new Array<string>(n);
    await inFlight(n, 256, async (i) => {
      ids[i] = (await store.start({ name })).task.id;
    });
  } else {
    queue = new Queue(BULL_QUEUE, { connection: { host: '127.0.0.1', port: redisServer.port } });
    for (let i = 0; i < n; i += 1000) {
      const jobs = await queue.addBulk(Array.from({ length: Math.min(1000, n - i) }, (_, j) => ({ name: 'noop', data: { i: i + j } })));
      for (const j of jobs) ids.push(j.id!);
    }
  }
  const redisCpu0 = cpuMs(redisServer.pid);
  const { proc, readyMs } = await startWorker(system, concurrency, `drain-c${concurrency}`);
  // The worker's CPU from the moment it is ready: its start-up (loading modules) is not the drain's.
  const workerCpu0 = proc.cpu();
  try {
    if (system === 'taskwire') await until(() => taskwireDrained(QUEUE), 'the taskwire drain');
    else await until(async () => (await queue!.getCompletedCount()) === n, 'the BullMQ drain');
    const redisUs = ((cpuMs(redisServer.pid) - redisCpu0) * 1000) / n;
    const workerUs = ((proc.cpu() - workerCpu0) * 1000) / n;
    const rss = proc.peakRss();
    // Verify every task really ran, and take its start/finish times.
    const pipe = redis.pipeline();
    for (const id of ids) {
      if (system === 'taskwire') pipe.hmget(keys.task(QUEUE, id), 'state', 'started', 'finished');
      // A BullMQ job that completed has a returnvalue ('null' for the no-op).
      else pipe.hmget(`bull:${BULL_QUEUE}:${id}`, 'returnvalue', 'processedOn', 'finishedOn');
    }
    const rows = ((await pipe.exec()) ?? []).map(([, v]) => v as (string | null)[]);
    let first = Infinity;
    let last = -Infinity;
    for (const [state, started, finished] of rows) {
      if (system === 'taskwire' ? state !== 'SUCCESS' : state !== 'null') throw new Error(`a drained ${system} task did not succeed (${state})`);
      if (!started || !finished) throw new Error(`a drained ${system} task has no start/finish time`);
      first = Math.min(first, Number(started));
      last = Math.max(last, Number(finished));
    }
    const perSec = (n / Math.max(1, last - first)) * 1000;
    if (inline) {
      record(`drain c=${concurrency}, inline task: Redis CPU per task (µs)`, system, redisUs);
      record(`drain c=${concurrency}, inline task: worker CPU per task (µs)`, system, workerUs);
      log(
        `  ${system} drain c=${concurrency}, inline task: ${perSec.toFixed(0)}/s, Redis ${redisUs.toFixed(1)} µs/task, worker ${workerUs.toFixed(1)} µs/task`,
      );
      return;
    }
    record(`drain c=${concurrency} (tasks/s)`, system, perSec);
    record(`worker start → ready, c=${concurrency} (ms)`, system, readyMs);
    if (concurrency !== 16) {
      record(`drain c=${concurrency}: Redis CPU per task (µs)`, system, redisUs);
      record(`drain c=${concurrency}: worker CPU per task (µs)`, system, workerUs);
      // BullMQ runs its jobs on its main thread: the same figure is the inline task's peer.
      if (system === 'bullmq' && want('inline')) {
        record(`drain c=${concurrency}, inline task: Redis CPU per task (µs)`, system, redisUs);
        record(`drain c=${concurrency}, inline task: worker CPU per task (µs)`, system, workerUs);
      }
    }
    if (concurrency === 100) record('worker peak RSS, drain c=100 (MiB)', system, rss / MiB);
    log(
      `  ${system} drain c=${concurrency}: ${perSec.toFixed(0)}/s, Redis ${redisUs.toFixed(1)} µs/task, worker ${workerUs.toFixed(1)} µs/task, ready in ${readyMs.toFixed(0)}ms, peak RSS ${(rss / MiB).toFixed(0)} MiB`,
    );
  } finally {
    await proc.stop();
    await queue?.close();
  }
}

const START_FIGURE = `Start over gRPC vs add, ${P.startInflight} in flight (tasks/s)`;
const SINGLE_FIGURE = `  the same, one Start RPC per call (tasks/s)`;
const BATCH_FIGURE = `batch: StartMany vs addBulk, ${P.batchSize}/batch (tasks/s)`;
const E2E_COLD = `end-to-end at ${P.e2eRate}/s, its first ${P.e2eColdSeconds} s`;

async function enqueueRate(system: System, batch: boolean): Promise<void> {
  // taskwire's Start runs twice: as its client sends it (start() calls made together go as
  // one StartMany) and with batching off (one Start RPC per call, the cost of the gRPC hop).
  const modes: [mode: string, figure: string][] = batch
    ? [[system === 'taskwire' ? 'many' : 'bulk', BATCH_FIGURE]]
    : system === 'taskwire'
      ? [
          ['start', START_FIGURE],
          ['single', SINGLE_FIGURE],
        ]
      : [['add', START_FIGURE]];
  for (const [mode, figure] of modes) {
    await redis.flushall();
    const api = system === 'taskwire' ? await startApi(mode) : undefined;
    const params = batch
      ? { mode, count: P.batchTasks, batch: P.batchSize, inflight: P.batchInflight }
      : { mode, count: mode === 'single' ? P.startTasks / 4 : P.startTasks, inflight: P.startInflight };
    const proc = client(system, { ...params, baseUrl: api?.baseUrl });
    let apiCpu0 = api?.proc.cpu() ?? 0;
    try {
      // The API's CPU from the end of the client's warm-up, to the end of its measured Starts.
      if (api && mode !== 'many') {
        await withServerOutput(proc.waitFor(/^WARM$/m), api.proc);
        apiCpu0 = api.proc.cpu();
        proc.send('go');
      }
      const r = await withServerOutput(proc.result<{ perSec: number }>(), api?.proc);
      record(figure, system, r.perSec);
      if (api && mode !== 'many')
        record(
          `${figure === START_FIGURE ? 'Start' : 'one Start RPC per call'}: API CPU per Start (µs)`,
          system,
          ((api.proc.cpu() - apiCpu0) * 1000) / params.count,
        );
      if (system === 'bullmq' && !batch) record(SINGLE_FIGURE, system, r.perSec);
      const rss = system === 'taskwire' ? api!.proc.peakRss() : proc.peakRss();
      if (mode === 'start' || mode === 'add') record('API peak RSS, Start bench (MiB) [BullMQ: producer]', system, rss / MiB);
      log(`  ${system} ${mode}: ${r.perSec.toFixed(0)}/s, peak RSS ${(rss / MiB).toFixed(0)} MiB`);
    } finally {
      await proc.stop();
      await api?.proc.stop();
    }
  }
}

/** Run's start-to-terminal latency, beside BullMQ's add → completed of the same run. */
const RUN_E2E = `Run end-to-end at ${P.e2eRate}/s: p50 (ms) [BullMQ: add → completed]`;

async function endToEnd(system: System, viaRun = false): Promise<void> {
  await redis.flushall();
  const api = system === 'taskwire' ? await startApi('e2e') : undefined;
  const { proc: worker } = await startWorker(system, P.e2eConcurrency, 'e2e');
  const proc = client(system, {
    mode: 'e2e',
    baseUrl: api?.baseUrl,
    rate: P.e2eRate,
    seconds: P.e2eSeconds,
    warmupSeconds: P.e2eWarmup,
    coldSeconds: P.e2eColdSeconds,
    viaRun,
  });
  try {
    const r = await withServerOutput(proc.result<{ samples: number[]; cold: number[]; late: number }>(), api?.proc);
    const l = latencyPercentiles(r.samples);
    const c = latencyPercentiles(r.cold);
    if (system === 'bullmq') record(RUN_E2E, system, l.p50);
    if (viaRun) {
      record(RUN_E2E, system, l.p50);
      log(`  ${system} Run e2e: p50 ${l.p50.toFixed(2)} p95 ${l.p95.toFixed(2)} p99 ${l.p99.toFixed(2)} ms (n=${l.n}, late ${r.late})`);
      return;
    }
    record(`end-to-end at ${P.e2eRate}/s: p50 (ms)`, system, l.p50);
    record(`end-to-end at ${P.e2eRate}/s: p95 (ms)`, system, l.p95);
    record(`end-to-end at ${P.e2eRate}/s: p99 (ms)`, system, l.p99);
    record(`${E2E_COLD}: p50 (ms)`, system, c.p50);
    record(`${E2E_COLD}: p99 (ms)`, system, c.p99);
    log(
      `  ${system} e2e: p50 ${l.p50.toFixed(2)} p95 ${l.p95.toFixed(2)} p99 ${l.p99.toFixed(2)} ms (n=${l.n}, late ${r.late}); first second p50 ${c.p50.toFixed(2)} p99 ${c.p99.toFixed(2)} ms`,
    );
  } finally {
    await proc.stop();
    await worker.stop();
    await api?.proc.stop();
  }
}

async function fanout(n: number): Promise<void> {
  await redis.flushall();
  const api = await startApi(`fanout-${n}`);
  const proc = client('taskwire', { mode: 'fanout', baseUrl: api.baseUrl, count: n, connections: P.fanoutConnections });
  let worker: Proc | undefined;
  try {
    await proc.waitFor(/^CREATED \d+$/m);
    await new Promise((r) => setTimeout(r, 300)); // let the API's allocations from the Starts settle
    const before = api.proc.rss();
    proc.send('go');
    await proc.waitFor(/^WATCHING \d+$/m, 120_000);
    const after = api.proc.rss();
    worker = (await startWorker('taskwire', P.fanoutConcurrency, `fanout-${n}`)).proc;
    const r = await withServerOutput(proc.result<{ samples: number[] }>(180_000), api.proc);
    if (r.samples.length !== n) throw new Error(`fan-out: ${r.samples.length} of ${n} watchers saw the end`);
    const l = latencyPercentiles(r.samples);
    const perWatcher = (after - before) / n / 1024;
    record(`fan-out ${n} watchers: memory per watcher (KiB)`, 'taskwire', perWatcher);
    record(`fan-out ${n} watchers: delivery p99 (ms)`, 'taskwire', l.p99);
    log(
      `  taskwire fan-out ${n}: ${perWatcher.toFixed(1)} KiB/watcher, delivery p50 ${l.p50} p99 ${l.p99} ms, API peak ${(api.proc.peakRss() / MiB).toFixed(0)} MiB`,
    );
  } finally {
    await proc.stop();
    await worker?.stop();
    await api.proc.stop();
  }
}

// ---------------------------------------------------------------------------------------
// report

interface Row {
  figure: string;
  target?: string;
  /** lower is better (latency, memory) */
  lower?: boolean;
  /** the check against the target: ratio taskwire/BullMQ, or taskwire's own value */
  pass?: (tw: Spread, ratio: number) => boolean;
}

const fmt = (v: number) =>
  !Number.isFinite(v) ? '—' : v >= 1000 ? Math.round(v).toLocaleString('en-US') : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
const cell = (s: Spread) => (s.n === 0 ? '—' : s.n === 1 ? fmt(s.median) : `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`);

function report(rows: Row[]): string {
  const lines: string[][] = [['figure', 'taskwire', 'BullMQ', 'tw/BullMQ', 'target']];
  for (const row of rows) {
    const f = figures.get(row.figure);
    if (!f) continue;
    const tw = spread(f.taskwire);
    const bq = spread(f.bullmq);
    const ratio = tw.median / bq.median;
    const verdict = row.pass ? (row.pass(tw, ratio) ? ' ok' : ' MISSED') : '';
    lines.push([row.figure, cell(tw), cell(bq), bq.n ? `${ratio.toFixed(2)}×` : '—', row.target ? `${row.target}${verdict}` : '']);
  }
  const widths = lines[0]!.map((_, c) => Math.max(...lines.map((l) => l[c]!.length)));
  const out = lines.map((l) =>
    l
      .map((v, c) => (c === 0 ? v.padEnd(widths[c]!) : v.padStart(widths[c]!)))
      .join('  ')
      .trimEnd(),
  );
  out.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  return out.join('\n');
}

const atLeast = (x: number) => (_: Spread, r: number) => r >= x;
const atMost = (x: number) => (_: Spread, r: number) => r <= x;
const ROWS: Row[] = [
  { figure: 'drain c=1 (tasks/s)', target: '≥1×', pass: atLeast(1) },
  { figure: 'drain c=1: Redis CPU per task (µs)' },
  { figure: 'drain c=1: worker CPU per task (µs)' },
  { figure: 'drain c=16 (tasks/s)' },
  { figure: 'drain c=100 (tasks/s)', target: '≥2×', pass: atLeast(2) },
  { figure: 'drain c=100: Redis CPU per task (µs)', target: '≤0.85×', pass: atMost(0.85) },
  { figure: 'drain c=100: worker CPU per task (µs)', target: '≤1×', pass: atMost(1) },
  { figure: 'drain c=1, inline task: worker CPU per task (µs)' },
  { figure: 'drain c=100, inline task: Redis CPU per task (µs)' },
  { figure: 'drain c=100, inline task: worker CPU per task (µs)', target: '≤0.7×', pass: atMost(0.7) },
  { figure: START_FIGURE, target: '≥1×', pass: atLeast(1) },
  { figure: 'Start: API CPU per Start (µs)', target: '≤30 µs', pass: (tw) => tw.median <= 30 },
  { figure: SINGLE_FIGURE },
  { figure: 'one Start RPC per call: API CPU per Start (µs)' },
  { figure: BATCH_FIGURE, target: '≥3×', pass: atLeast(3) },
  { figure: `end-to-end at ${P.e2eRate}/s: p50 (ms)`, target: '≤1×', pass: atMost(1) },
  { figure: `end-to-end at ${P.e2eRate}/s: p95 (ms)` },
  { figure: `end-to-end at ${P.e2eRate}/s: p99 (ms)`, target: '≤1×', pass: atMost(1) },
  { figure: `${E2E_COLD}: p50 (ms)` },
  { figure: `${E2E_COLD}: p99 (ms)` },
  { figure: RUN_E2E, target: '≤1.5×', pass: atMost(1.5) },
  ...P.fanout.flatMap((n): Row[] => [
    {
      figure: `fan-out ${n} watchers: memory per watcher (KiB)`,
      ...(n >= 10_000 ? { target: '<10 KiB', pass: (tw: Spread) => tw.median < 10 } : {}),
    },
    { figure: `fan-out ${n} watchers: delivery p99 (ms)` },
  ]),
  { figure: 'worker peak RSS, drain c=100 (MiB)', target: '≤1×', pass: atMost(1) },
  { figure: 'API peak RSS, Start bench (MiB) [BullMQ: producer]' },
  ...P.drainConcurrency.map((c) => ({ figure: `worker start → ready, c=${c} (ms)` })),
];

// ---------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const began = Date.now();
  mkdirSync(`${ROOT}bench/results`, { recursive: true });
  if (flags.profile) mkdirSync(profileDir, { recursive: true });
  redisServer = await startRedisServer();
  redis = await connectReady(redisServer.url, 'bench');
  await redis.config('SET', 'maxmemory-policy', 'noeviction');
  store = new TaskStore(redis, await loadRegistry(TASKS), { resultTtlMs: 86_400_000, eventLogCap: 1000, maxPayloadBytes: 1 << 20 });
  const info = ((await redis.info('server')).match(/redis_version:(\S+)/) ?? [])[1];
  log(`redis-server ${info} (pid ${redisServer.pid}) at ${redisServer.url}; node ${process.version}; ${P.rounds} round(s)${quick ? ', quick' : ''}`);
  try {
    for (let round = 0; round < P.rounds; round++) {
      // Alternate who goes first, so neither always runs on a warmer (or busier) machine.
      const order: System[] = round % 2 === 0 ? ['taskwire', 'bullmq'] : ['bullmq', 'taskwire'];
      log(`round ${round + 1}/${P.rounds}`);
      for (const c of P.drainConcurrency) if (want('drain')) for (const s of order) await drain(s, c);
      // The same drains of a task defined with inline: true (c=1 and c=100; BullMQ's figures
      // are those of its drains above).
      for (const c of [1, 100]) if (want('inline')) await drain('taskwire', c, true);
      if (want('start')) for (const s of order) await enqueueRate(s, false);
      if (want('batch')) for (const s of order) await enqueueRate(s, true);
      if (want('e2e')) for (const s of order) await endToEnd(s);
      if (want('e2e')) await endToEnd('taskwire', true);
      // One fan-out per run: it has no BullMQ side to alternate with, and 10,000 streams
      // take most of a minute on 2 cores.
      if (want('fanout') && round === 0) for (const n of P.fanout) await fanout(n);
    }
  } finally {
    await stopAllProcs();
    await redis.quit();
    await redisServer.stop();
  }
  const table = report(ROWS);
  const header = `taskwire vs BullMQ 6.7.0 — ${P.rounds} round(s), medians (min–max); node ${process.version}, redis ${info}, ${(
    (Date.now() - began) / 1000
  ).toFixed(0)} s`;
  process.stdout.write(`\n${header}\n\n${table}\n`);
  const file = `${ROOT}bench/results/${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
  writeFileSync(file, JSON.stringify({ params: P, figures: Object.fromEntries(figures), table }, null, 2));
  log(`\nraw figures: ${file}${flags.profile ? `\nCPU profiles: ${profileDir}` : ''}`);
}

main().catch(async (err: Error) => {
  log(`bench failed: ${err.stack ?? err.message}`);
  await stopAllProcs();
  await redis?.quit().catch(() => {});
  await redisServer?.stop();
  process.exit(1);
});
