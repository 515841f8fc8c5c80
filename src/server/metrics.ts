/**
 * Prometheus metrics of one API server, served at GET /metrics on the API port.
 *
 * Where each number comes from:
 * - tasks started: counted by the API server that accepted the Start (sum over servers);
 * - succeeded / failed / revoked / retried, run time and queue wait: from the change feed
 *   every API server already hears for its watchers (WatchHub). Every API server hears
 *   every change, so these describe the whole cluster as seen from this server: take
 *   max() over API servers, not sum(). A worker needs no port of its own for them.
 * - queue depth, scheduled and in-flight: read from Redis when scraped (cluster-wide);
 * - watchers and open streams: this server's.
 */
import type http from 'node:http';
import type http2 from 'node:http2';
import type { ChainableCommander } from 'ioredis';
import { execBatched, type RedisClient } from '../redis.js';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { CONSUMER_GROUP, keys } from '../store/keys.js';
import type { Hash, TaskRecord } from '../store/record.js';
import type { TokenAuth } from './auth.js';
import type { WatchHub } from './watchHub.js';

const SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];
/** Tasks whose last state is remembered to tell a state change from a progress update. */
const REMEMBERED = 50_000;

interface QueueState {
  queue: string;
  ready: number;
  scheduled: number;
  inFlight: number;
}

interface Seen {
  state: string;
  attempt: string;
  /** When the task became due to run (ms), while it waits. */
  due?: number;
}

const num = (s: string | undefined): number | undefined => (s === undefined || s === '' ? undefined : Number(s));

export class ApiMetrics {
  readonly registry = new Registry();
  private readonly started: Counter<'task' | 'queue'>;
  private readonly ended: Record<'SUCCESS' | 'FAILURE' | 'REVOKED' | 'RETRY', Counter<'task' | 'queue'>>;
  private readonly runSeconds: Histogram<'task' | 'queue' | 'state'>;
  private readonly waitSeconds: Histogram<'task' | 'queue'>;
  private readonly seen = new Map<string, Seen>();
  /** Read once per scrape, shared by the queue gauges. */
  private queueState: Promise<QueueState[]> | undefined;

  constructor(
    private readonly redis: RedisClient,
    hub: WatchHub,
    private readonly queues: readonly string[],
    openStreams: () => number,
  ) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const counter = (name: string, help: string) => new Counter({ name, help, labelNames: ['task', 'queue'] as const, registers });
    this.started = counter('taskwire_tasks_started_total', 'Tasks accepted by Start on this API server.');
    this.ended = {
      SUCCESS: counter('taskwire_tasks_succeeded_total', 'Tasks that ended in SUCCESS (cluster-wide, from the change feed).'),
      FAILURE: counter('taskwire_tasks_failed_total', 'Tasks that ended in FAILURE (cluster-wide, from the change feed).'),
      REVOKED: counter('taskwire_tasks_revoked_total', 'Tasks that ended in REVOKED (cluster-wide, from the change feed).'),
      RETRY: counter('taskwire_tasks_retried_total', 'Attempts that failed and will run again (cluster-wide).'),
    };
    this.runSeconds = new Histogram({
      name: 'taskwire_task_run_seconds',
      help: 'Run time of an attempt, from its start to its end, by the state it ended in.',
      labelNames: ['task', 'queue', 'state'] as const,
      buckets: SECONDS,
      registers,
    });
    this.waitSeconds = new Histogram({
      name: 'taskwire_task_queue_wait_seconds',
      help: 'Time from when an attempt was due (queued, countdown or backoff over) to when a worker started it.',
      labelNames: ['task', 'queue'] as const,
      buckets: SECONDS,
      registers,
    });
    const self = this;
    const perQueue = (name: string, help: string, pick: (q: QueueState) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['queue'] as const,
        registers,
        async collect() {
          for (const q of await self.readQueues()) this.set({ queue: q.queue }, pick(q));
        },
      });
    perQueue('taskwire_queue_depth', 'Tasks queued and waiting for a free worker slot.', (q) => q.ready);
    perQueue('taskwire_queue_scheduled', 'Tasks waiting for a countdown or a retry backoff.', (q) => q.scheduled);
    perQueue('taskwire_tasks_in_flight', 'Tasks handed to a worker and not yet finished.', (q) => q.inFlight);
    new Gauge({
      name: 'taskwire_watchers',
      help: 'WatchStatus and WatchEvents streams open on this API server.',
      registers,
      collect() {
        // Less one: the change-feed listener of these metrics is not a watcher.
        this.set(hub.watchers - 1);
      },
    });
    new Gauge({
      name: 'taskwire_streams_open',
      help: 'Server streams (watches, health watches) open on this API server.',
      registers,
      collect() {
        this.set(openStreams());
      },
    });
    hub.watchAll((h) => this.observe(h));
  }

  /** A Start created a task (not an idempotent repeat). */
  taskStarted(task: TaskRecord): void {
    this.started.inc({ task: task.name, queue: task.queue });
  }

  /** One change snapshot from the feed: count it when the state changed. */
  observe(h: Hash): void {
    const { id, state, name, queue } = h;
    if (!id || !state || !name || !queue) return;
    const attempt = h.attempt ?? '0';
    const before = this.seen.get(id);
    if (before && before.state === state && before.attempt === attempt) return; // progress, cancel flag
    this.seen.delete(id);
    const labels = { task: name, queue };
    const started = num(h.started);
    const at = num(h.finished) ?? num(h.updated) ?? Date.now();
    if (state === 'STARTED') {
      const due = before?.due ?? (attempt === '1' ? Math.max(num(h.created) ?? 0, num(h.not_before) ?? 0) : undefined);
      if (due && started) this.waitSeconds.observe(labels, Math.max(0, started - due) / 1000);
    } else if (started && (before === undefined || before.state === 'STARTED') && state !== 'PENDING') {
      this.runSeconds.observe({ ...labels, state }, Math.max(0, at - started) / 1000);
    }
    if (state === 'SUCCESS' || state === 'FAILURE' || state === 'REVOKED' || state === 'RETRY') this.ended[state].inc(labels);
    if (state === 'SUCCESS' || state === 'FAILURE' || state === 'REVOKED') return;
    const due = state === 'PENDING' ? Math.max(num(h.updated) ?? 0, num(h.not_before) ?? 0) : state === 'RETRY' ? num(h.next_at) : undefined;
    this.seen.set(id, { state, attempt, due });
    if (this.seen.size > REMEMBERED) this.seen.delete(this.seen.keys().next().value!);
  }

  /** Queue figures from Redis, shared by the gauges of one scrape. */
  private readQueues(): Promise<QueueState[]> {
    if (this.queueState) return this.queueState;
    const value = (async () => {
      const replies = await execBatched(
        this.redis,
        this.queues.flatMap((q) => [
          { key: keys.stream(q), add: (p: ChainableCommander) => p.xlen(keys.stream(q)) },
          { key: keys.stream(q), add: (p: ChainableCommander) => p.xinfo('GROUPS', keys.stream(q)) },
          { key: keys.scheduled(q), add: (p: ChainableCommander) => p.zcard(keys.scheduled(q)) },
        ]),
      );
      return this.queues.map((queue, i) => {
        const [len, groups, scheduled] = replies.slice(i * 3, i * 3 + 3).map(([err, v]) => (err ? undefined : v));
        let inFlight = 0;
        let lag: unknown;
        for (const g of (groups as unknown[][] | undefined) ?? []) {
          const info = new Map<unknown, unknown>();
          for (let k = 0; k + 1 < g.length; k += 2) info.set(g[k], g[k + 1]);
          if (info.get('name') === CONSUMER_GROUP) {
            inFlight = Number(info.get('pending') ?? 0);
            lag = info.get('lag');
          }
        }
        // Waiting: the entries not yet delivered to the group (its lag, Redis 7). Without it,
        // the stream less the in-flight, which also counts acknowledged entries that the
        // workers have not trimmed yet (at most about a second's worth).
        const ready = typeof lag === 'number' ? lag : Math.max(0, Number(len ?? 0) - inFlight);
        return { queue, ready, scheduled: Number(scheduled ?? 0), inFlight };
      });
    })();
    value.catch(() => undefined);
    this.queueState = value;
    return value;
  }

  /** Runs started and ticks skipped per schedule, from the counters in each schedule's hash
   * (any process's fires count): read from Redis when scraped, cluster-wide. */
  countSchedules(list: () => Promise<{ id: string; queue: string; task: { name: string }; runs: number; skipped: number }[]>): void {
    let read: Promise<Awaited<ReturnType<typeof list>>> | undefined;
    const registers = [this.registry];
    const perSchedule = (name: string, help: string, pick: (s: Awaited<ReturnType<typeof list>>[number]) => number) =>
      new Counter({
        name,
        help,
        labelNames: ['schedule', 'queue', 'task'] as const,
        registers,
        async collect() {
          // One read per scrape, shared by both counters.
          read ??= list().finally(() => setImmediate(() => (read = undefined)));
          const all = await read.catch(() => undefined);
          if (!all) return;
          this.reset();
          for (const s of all) this.inc({ schedule: s.id, queue: s.queue, task: s.task.name }, pick(s));
        },
      });
    perSchedule('taskwire_schedule_runs_total', 'Runs started by each periodic schedule (cluster-wide, kept in Redis).', (s) => s.runs);
    perSchedule(
      'taskwire_schedule_skipped_total',
      'Ticks each schedule skipped because its last run had not finished (overlap skip).',
      (s) => s.skipped,
    );
  }

  async render(): Promise<{ contentType: string; body: string }> {
    let body: string;
    this.queueState = undefined;
    try {
      body = await this.registry.metrics();
    } catch {
      // Redis away: the queue gauges keep their last values, the rest still answers.
      this.queueState = Promise.resolve([]);
      body = await this.registry.metrics();
    }
    return { contentType: this.registry.contentType, body };
  }
}

type NodeHandler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void;

/** GET /metrics answers from `metrics` (behind the token unless public); the rest goes on. */
export function withMetrics<H extends NodeHandler>(next: H, metrics: ApiMetrics, auth: TokenAuth): H {
  return ((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') return next(req, res);
    const reply = (status: number, type: string, body: string) => {
      (res as http.ServerResponse).writeHead(status, { 'content-type': type }).end(body);
    };
    if (!auth.isPublic('metrics') && !auth.allows(req.headers.authorization)) {
      reply(401, 'text/plain', 'a valid bearer token is required\n');
      return;
    }
    metrics.render().then(
      ({ contentType, body }) => reply(200, contentType, body),
      () => reply(500, 'text/plain', 'metrics could not be collected\n'),
    );
  }) as H;
}
