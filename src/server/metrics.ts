/**
 * Prometheus metrics of one API server, served at GET /metrics on the API port.
 *
 * Where each number comes from:
 * - tasks started: counted by the API server that accepted the Start (sum over servers);
 * - succeeded / failed / revoked / retried, run time and queue wait: counted in Redis, in
 *   each queue's slot, by the scripts that write a task's state (store/stats.ts), and read
 *   when scraped. Every API server reports the same cluster-wide figures: take max() over
 *   API servers, not sum(). No server hears a change feed for them, and a worker needs no
 *   port of its own.
 * - queue depth, scheduled and in-flight: read from Redis when scraped (cluster-wide);
 * - watchers and open streams: this server's.
 */
import type http from 'node:http';
import type http2 from 'node:http2';
import type { ChainableCommander } from 'ioredis';
import { execBatched, type RedisClient } from '../redis.js';
import { collectDefaultMetrics, Counter, Gauge, type Metric, Registry } from 'prom-client';
import { queueName } from '../ids.js';
import { CONSUMER_GROUP, keys } from '../store/keys.js';
import { knownQueues } from '../store/queueRegistry.js';
import type { TaskRecord } from '../store/record.js';
import { HISTOGRAM_SECONDS } from '../store/histogram.js';
import { cumulative, type QueueStats, readStats, type TimeCounts } from '../store/stats.js';
import type { TokenAuth } from './auth.js';
import type { WatchHub } from './watchHub.js';

interface QueueState {
  queue: string;
  ready: number;
  scheduled: number;
  inFlight: number;
}

type Sample = { labels: Record<string, string | number>; value: number; metricName?: string };

export class ApiMetrics {
  readonly registry = new Registry();
  private readonly started: Counter<'task' | 'queue'>;
  /** Read once per scrape, shared by the queue gauges. */
  private queueState: Promise<QueueState[]> | undefined;
  /** The queues' outcome counters, read once per scrape; the last read that answered. */
  private stats: Promise<Map<string, QueueStats>> | undefined;
  private lastStats = new Map<string, QueueStats>();

  constructor(
    private readonly redis: RedisClient,
    hub: WatchHub,
    private readonly queues: readonly string[],
    openStreams: () => number,
  ) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.started = new Counter({
      name: 'taskwire_tasks_started_total',
      help: 'Tasks accepted by Start on this API server.',
      labelNames: ['task', 'queue'] as const,
      registers,
    });
    // Counted in Redis by the scripts that write the state (store/stats.ts): every API
    // server reports the same cluster-wide figures; take max() over servers, not sum().
    const ended = (name: string, state: string, help: string) =>
      this.custom(name, help, 'counter', async () => {
        const out: Sample[] = [];
        for (const [queue, st] of await this.readStats()) {
          for (const [task, n] of st.ended.get(state) ?? []) out.push({ labels: { task, queue }, value: n });
        }
        return out;
      });
    ended('taskwire_tasks_succeeded_total', 'SUCCESS', 'Tasks that ended in SUCCESS (cluster-wide, counted in Redis).');
    ended('taskwire_tasks_failed_total', 'FAILURE', 'Tasks that ended in FAILURE (cluster-wide, counted in Redis).');
    ended('taskwire_tasks_revoked_total', 'REVOKED', 'Tasks that ended in REVOKED (cluster-wide, counted in Redis).');
    ended('taskwire_tasks_retried_total', 'RETRY', 'Attempts that failed and will run again (cluster-wide, counted in Redis).');
    this.custom(
      'taskwire_task_run_seconds',
      'Run time of an attempt, from its start to its end, by the state it ended in (cluster-wide, counted in Redis).',
      'histogram',
      async () => {
        const out: Sample[] = [];
        for (const [queue, st] of await this.readStats()) {
          for (const [state, byTask] of st.run) {
            for (const [task, t] of byTask) histogram(out, 'taskwire_task_run_seconds', { task, queue, state }, t);
          }
        }
        return out;
      },
    );
    this.custom(
      'taskwire_task_queue_wait_seconds',
      'Time from when an attempt was due (queued, countdown or backoff over) to when a worker started it (cluster-wide, counted in Redis).',
      'histogram',
      async () => {
        const out: Sample[] = [];
        for (const [queue, st] of await this.readStats()) {
          for (const [task, t] of st.wait) histogram(out, 'taskwire_task_queue_wait_seconds', { task, queue }, t);
        }
        return out;
      },
    );
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
        this.set(hub.watchers);
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
  }

  /** A Start created a task (not an idempotent repeat). */
  taskStarted(task: TaskRecord): void {
    this.started.inc({ task: task.name, queue: task.queue });
  }

  /** A metric whose samples are made at scrape time from what Redis keeps. */
  private custom(name: string, help: string, type: 'counter' | 'histogram', values: () => Promise<Sample[]>): void {
    const metric = {
      name,
      help,
      type,
      get: async () => ({ name, help, type, aggregator: 'max', values: await values() }),
    };
    this.registry.registerMetric(metric as unknown as Metric);
  }

  /** The outcome counters of every queue in use (and this server's), shared by one scrape;
   * with Redis away, the last figures read. */
  private readStats(): Promise<Map<string, QueueStats>> {
    this.stats ??= (async () => {
      try {
        const queues = new Set([...this.queues, ...(await knownQueues(this.redis))]);
        this.lastStats = await readStats(this.redis, [...queues].sort());
      } catch {
        // Redis away: the counters keep their last values.
      }
      return this.lastStats;
    })();
    return this.stats;
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
      const parts = this.queues.map((queue, i) => {
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
      // The partitions of a partitioned queue add up under the queue's name.
      const byName = new Map<string, QueueState>();
      for (const p of parts) {
        const name = queueName(p.queue);
        const sum = byName.get(name);
        if (!sum) byName.set(name, { ...p, queue: name });
        else for (const f of ['ready', 'scheduled', 'inFlight'] as const) sum[f] += p[f];
      }
      return [...byName.values()];
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
    this.stats = undefined;
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

/** The samples of one histogram series: cumulative buckets, +Inf, sum (seconds) and count. */
function histogram(out: Sample[], name: string, labels: Record<string, string>, t: TimeCounts): void {
  const { bounds, count } = cumulative(t);
  HISTOGRAM_SECONDS.forEach((le, i) => {
    out.push({ metricName: `${name}_bucket`, labels: { ...labels, le }, value: bounds[i]! });
  });
  out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: count });
  out.push({ metricName: `${name}_sum`, labels, value: t.sumMs / 1000 });
  out.push({ metricName: `${name}_count`, labels, value: count });
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
