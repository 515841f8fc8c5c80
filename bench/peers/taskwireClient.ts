/**
 * The producer side of the taskwire benchmarks, as its own process: the project's client
 * over real gRPC to a running API server. One mode per run; prints `RESULT {json}`.
 *
 *   start   N client.start() calls, `inflight` pending at once (the client sends the calls
 *           made together as one StartMany), after a warm-up and a line on stdin → { perSec }
 *   single  the same with batchStarts: false: one Start RPC per call     → { perSec }
 *   many    N tasks as StartMany batches of `batch`, `inflight` batches → { perSec }
 *   e2e     a steady `rate`/s for `warmupSeconds` + `seconds`: Start, then WatchStatus
 *           (or one Run call, with `viaRun`) until terminal → latency samples (ms) from calling Start to the terminal
 *           record arriving, after the warm-up, and those of its first `coldSeconds` (cold)
 *   fanout  start N tasks (no worker yet), open one WatchStatus each, print WATCHING,
 *           (after a line on stdin), then wait for every terminal record → delivery latency samples (ms) from
 *           the task's finish time to its arrival on the stream
 */
import { create } from '@bufbuild/protobuf';
import { StartRequestSchema } from '../../gen/taskwire/v1/task_service_pb.js';
import { TaskState } from '../../gen/taskwire/v1/task_pb.js';
import { TERMINAL, TaskwireClient } from '../../src/client/index.js';
import { inFlight } from '../lib/stats.js';
import { pacedLatencies } from '../lib/pace.js';
import { childParams, printResult } from '../lib/proc.js';

interface Params {
  mode: 'start' | 'single' | 'many' | 'e2e' | 'fanout';
  baseUrl: string;
  count: number;
  inflight: number;
  batch: number;
  rate: number;
  seconds: number;
  warmupSeconds: number;
  /** e2e: the samples of this first part of the warm-up are reported apart (cold). */
  coldSeconds: number;
  /** e2e: one Run call per task instead of Start then WatchStatus. */
  viaRun: boolean;
  /** fanout: spread the streams over this many HTTP/2 connections. */
  connections: number;
}

const p = childParams<Params>();
// Stopped by the orchestrator once it has the result: exit cleanly, so that a CPU profile
// (--profile) is written.
process.once('SIGTERM', () => process.exit(0));
const client = new TaskwireClient({ baseUrl: p.baseUrl });
const noopRequest = create(StartRequestSchema, TaskwireClient.startRequest('noop'));

async function warm(): Promise<void> {
  // Open the HTTP/2 session and warm the JIT on both sides before the clock starts.
  await inFlight(500, p.inflight || 16, () => client.rpc.start(noopRequest));
}

async function startMode(batchStarts = true): Promise<void> {
  await warm();
  const starter = new TaskwireClient({ baseUrl: p.baseUrl, batchStarts });
  await inFlight(500, p.inflight, () => starter.start('noop'));
  // The orchestrator reads the API's CPU now (the warm-up is not the figure's), then says go.
  process.stdout.write('WARM\n');
  await new Promise<void>((r) => process.stdin.once('data', () => r()));
  const t0 = performance.now();
  await inFlight(p.count, p.inflight, () => starter.start('noop'));
  const s = (performance.now() - t0) / 1000;
  printResult({ perSec: p.count / s, seconds: s });
}

async function manyMode(): Promise<void> {
  await warm();
  const batches = Math.ceil(p.count / p.batch);
  const requests = Array.from({ length: p.batch }, () => noopRequest);
  const t0 = performance.now();
  let refused = 0;
  await inFlight(batches, p.inflight, async () => {
    const res = await client.rpc.startMany({ requests });
    for (const r of res.results) if (r.outcome.case !== 'task') refused++;
  });
  const s = (performance.now() - t0) / 1000;
  if (refused) throw new Error(`${refused} tasks were refused`);
  printResult({ perSec: (batches * p.batch) / s, seconds: s });
}

async function e2eMode(): Promise<void> {
  const result = await pacedLatencies(p, async () => {
    const begin = performance.now();
    let end = NaN;
    const records = p.viaRun ? client.run('noop') : client.watch((await client.start('noop')).id);
    for await (const t of records) {
      if (TERMINAL.has(t.state)) {
        end = performance.now();
        if (t.state !== TaskState.SUCCESS) throw new Error(`task ${t.id} ended ${TaskState[t.state]}`);
      }
    }
    return end - begin;
  });
  printResult(result);
}

async function fanoutMode(): Promise<void> {
  // Each client opens its own HTTP/2 connection (the project's transport, as the other
  // figures and users have it).
  const clients = Array.from({ length: p.connections }, () => new TaskwireClient({ baseUrl: p.baseUrl }));
  const ids: string[] = [];
  const requests = Array.from({ length: Math.min(p.count, 1000) }, () => noopRequest);
  while (ids.length < p.count) {
    const res = await client.rpc.startMany({ requests: requests.slice(0, p.count - ids.length) });
    for (const r of res.results) if (r.outcome.case === 'task') ids.push(r.outcome.value.id);
  }
  // The orchestrator measures the API's memory now, then lets the watchers open.
  process.stdout.write(`CREATED ${ids.length}\n`);
  await new Promise<void>((r) => process.stdin.once('data', () => r()));
  const samples: number[] = [];
  let open = 0;
  let announce: () => void;
  const allOpen = new Promise<void>((r) => (announce = r));
  const watches = ids.map(async (id, i) => {
    let first = true;
    for await (const t of clients[i % clients.length]!.watch(id, { maxRetries: 0 })) {
      if (first) {
        first = false;
        if (++open === ids.length) announce();
      }
      if (TERMINAL.has(t.state)) {
        const finished = t.finishedAt ? Number(t.finishedAt.seconds) * 1000 + t.finishedAt.nanos / 1e6 : NaN;
        samples.push(Date.now() - finished);
      }
    }
  });
  await allOpen;
  process.stdout.write(`WATCHING ${open}\n`);
  await Promise.all(watches);
  printResult({ samples });
}

const modes = { start: () => startMode(true), single: () => startMode(false), many: manyMode, e2e: e2eMode, fanout: fanoutMode };
modes[p.mode]().then(
  () => process.exit(0),
  (err: Error) => {
    process.stderr.write(`taskwire client failed: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
