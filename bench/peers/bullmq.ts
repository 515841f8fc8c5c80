/**
 * The BullMQ side of the benchmarks, as its own process, on the same Redis. One role per
 * run; prints `READY` (worker) or `RESULT {json}` (producer modes).
 *
 *   worker  a Worker with `concurrency` running a no-op processor, until SIGTERM
 *   add     N queue.add calls, `inflight` pending at once          → { perSec }
 *   bulk    N jobs as addBulk batches of `batch`, `inflight` batches → { perSec }
 *   e2e     a steady `rate`/s for `warmupSeconds` + `seconds`: add, then the job's
 *           `completed` event through QueueEvents → latency samples (ms) from calling add
 *           to the event, after the warm-up, and those of its first `coldSeconds` (cold)
 */
import { Queue, QueueEvents, Worker } from 'bullmq';
import { inFlight } from '../lib/stats.js';
import { pacedLatencies } from '../lib/pace.js';
import { childParams, printResult } from '../lib/proc.js';

interface Params {
  mode: 'worker' | 'add' | 'bulk' | 'e2e';
  url: string;
  queue: string;
  concurrency: number;
  count: number;
  inflight: number;
  batch: number;
  rate: number;
  seconds: number;
  warmupSeconds: number;
  /** e2e: the samples of this first part of the warm-up are reported apart (cold). */
  coldSeconds: number;
}

const p = childParams<Params>();
const { hostname, port } = new URL(p.url);
const connection = { host: hostname, port: Number(port), maxRetriesPerRequest: null };

async function workerMode(): Promise<void> {
  const worker = new Worker(p.queue, async () => null, { connection, concurrency: p.concurrency });
  worker.on('error', (err) => process.stderr.write(`bullmq worker error: ${err.message}\n`));
  await worker.waitUntilReady();
  process.stdout.write('READY\n');
  await new Promise<void>((resolve) => process.once('SIGTERM', resolve));
  await worker.close();
}

async function addMode(): Promise<void> {
  const queue = new Queue(p.queue, { connection });
  await inFlight(500, p.inflight, (i) => queue.add('noop', { i }));
  const t0 = performance.now();
  await inFlight(p.count, p.inflight, (i) => queue.add('noop', { i }));
  const s = (performance.now() - t0) / 1000;
  printResult({ perSec: p.count / s, seconds: s });
  await queue.close();
}

async function bulkMode(): Promise<void> {
  const queue = new Queue(p.queue, { connection });
  const batch = (n: number) => Array.from({ length: n }, (_, i) => ({ name: 'noop', data: { i } }));
  await queue.addBulk(batch(500));
  const batches = Math.ceil(p.count / p.batch);
  const t0 = performance.now();
  await inFlight(batches, p.inflight, () => queue.addBulk(batch(p.batch)));
  const s = (performance.now() - t0) / 1000;
  printResult({ perSec: (batches * p.batch) / s, seconds: s });
  await queue.close();
}

async function e2eMode(): Promise<void> {
  const queue = new Queue(p.queue, { connection });
  const events = new QueueEvents(p.queue, { connection });
  await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
  const waiting = new Map<string, (at: number) => void>();
  const early = new Map<string, number>();
  events.on('completed', ({ jobId }) => {
    const at = performance.now();
    const done = waiting.get(jobId);
    if (done) done(at);
    else early.set(jobId, at);
  });
  const result = await pacedLatencies(p, async (i) => {
    const begin = performance.now();
    const job = await queue.add('noop', { i });
    const id = job.id!;
    const end = early.get(id) ?? (await new Promise<number>((r) => waiting.set(id, r)));
    waiting.delete(id);
    early.delete(id);
    return end - begin;
  });
  printResult(result);
  await Promise.all([events.close(), queue.close()]);
}

const modes = { worker: workerMode, add: addMode, bulk: bulkMode, e2e: e2eMode };
modes[p.mode]().then(
  () => process.exit(0),
  (err: Error) => {
    process.stderr.write(`bullmq ${p.mode} failed: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
