/**
 * A worker: a few duties, each with start and stop, over one set of slots (runner.ts).
 *
 * - the fetch loop (fetcher.ts) fills free slots from the queues;
 * - the runner runs each begun task in a slot and writes how its attempt ended;
 * - the lease keeper (leaseKeeper.ts) renews the leases of what the worker holds;
 * - the reclaimer (recoverer.ts) takes over the tasks of workers that stopped renewing;
 * - the promoter (promoter.ts) moves due countdowns and retries onto their queues;
 * - the trimmer (streamTrimmer.ts) trims the streams of the queues it acknowledged;
 * - the reaper (consumerReaper.ts) forgets stopped workers' names;
 * - the canceller (canceller.ts) hears cancel requests and countdown announcements.
 *
 * A stop takes no new work, gives running tasks a grace period, and hands back what is left.
 */
import type { RedisClient } from '../redis.js';
import { Consumer, ensureGroups } from '../broker/consumer.js';
import { requeueUnclaimed } from '../broker/requeue.js';
import type { Config } from '../config.js';
import { QueuePartitions } from '../ids.js';
import type { Logger } from '../log.js';
import { checkEvictionPolicy, connectReady } from '../redis.js';
import { AttemptStore } from '../store/attemptStore.js';
import { loadRegistry } from '../tasks/define.js';
import { Canceller } from './canceller.js';
import { noteQueue } from '../store/queueRegistry.js';
import { ConsumerReaper } from './consumerReaper.js';
import { Fetcher } from './fetcher.js';
import { LeaseKeeper, leaseTick } from './leaseKeeper.js';
import { Pool } from './pool.js';
import { Promoter } from './promoter.js';
import { Recoverer } from './recoverer.js';
import { Runner } from './runner.js';
import { StreamTrimmer } from './streamTrimmer.js';

export type WorkerConfig = Pick<
  Config,
  'redisUrl' | 'redisCluster' | 'queues' | 'concurrency' | 'tasksModule' | 'workerName' | 'resultTtlMs' | 'eventLogCap' | 'leaseMs'
> &
  Partial<Pick<Config, 'queuePartitions'>>;

/** The queues a worker reads, each partitioned queue (in the setting or the tasks module) as
 * all its partitions: every duty (fetch, reclaim, promote, trim, reap, cancel) sees a
 * partition as a queue of its own. */
async function queuesRead(config: WorkerConfig): Promise<string[]> {
  // A module that does not load is reported by the handler threads, as without partitions.
  const registry = await loadRegistry(config.tasksModule).catch(() => undefined);
  return new QueuePartitions(registry?.queuePartitions(config.queuePartitions) ?? config.queuePartitions).expand(config.queues);
}

export class Worker {
  private readonly runner: Runner;
  private readonly fetcher: Fetcher;
  private readonly leases: LeaseKeeper;
  private readonly recoverer: Recoverer;
  private readonly promoter: Promoter;
  private readonly trimmer: StreamTrimmer;
  private readonly reaper: ConsumerReaper;
  private readonly canceller: Canceller;
  private stopped: Promise<void> | undefined;
  /** Ends the grace period now (a second signal). */
  private forceStop: (() => void) | undefined;
  private forced = false;

  private constructor(
    private readonly config: WorkerConfig,
    private readonly log: Logger,
    private readonly redis: RedisClient,
    blocking: RedisClient,
    sub: RedisClient,
    private readonly pool: Pool,
  ) {
    const { workerName: self, leaseMs } = config;
    const queues = config.queues;
    const attempts = new AttemptStore(redis, self, config);
    this.trimmer = new StreamTrimmer(redis, log);
    this.promoter = new Promoter(redis, queues, leaseTick(leaseMs), log);
    this.canceller = new Canceller(
      sub,
      queues,
      (id) => this.runner.running.get(id),
      (due) => this.promoter.promoteAt(due),
      log,
    );
    this.runner = new Runner({
      attempts,
      pool,
      canceller: this.canceller,
      trimmer: this.trimmer,
      promoter: this.promoter,
      log,
      slotFreed: () => this.fetcher.wakeUp(),
    });
    this.recoverer = new Recoverer(redis, self, queues, leaseMs, this.runner, log);
    this.fetcher = new Fetcher({
      redis,
      consumer: new Consumer(blocking, self, queues, (late, closed) => {
        for (const d of late) closed ? this.runner.keep(d) : this.runner.deliver(d);
      }),
      attempts,
      runner: this.runner,
      recoverer: this.recoverer,
      queues,
      log,
    });
    this.leases = new LeaseKeeper(
      redis,
      self,
      leaseMs,
      () => this.runner.held(),
      (id, mode) => this.canceller.apply(id, mode),
      log,
    );
    this.reaper = new ConsumerReaper(redis, self, queues, leaseMs, log);
  }

  static async start(config: WorkerConfig, log: Logger): Promise<Worker> {
    const url = config.redisCluster ?? config.redisUrl!;
    const queues = await queuesRead(config);
    // No auto-pipelining: the worker batches its own commands (its writes of a turn go as one
    // script call per queue, AttemptStore), and ioredis's pipeline per tick only added CPU.
    // Commands still reach Redis in the order issued.
    const redis = await connectReady(url, 'worker', { queueWhileDown: true, noPipelining: true });
    const blocking = await connectReady(url, 'worker-read', { queueWhileDown: true, noPipelining: true });
    const sub = await connectReady(url, 'worker-control', { queueWhileDown: true, noPipelining: true, subscriber: true });
    await checkEvictionPolicy(redis, log);
    await ensureGroups(redis, queues);
    // Its tasks' changes are heard by a WatchEvents of every queue, old tasks' included.
    for (const q of queues) await noteQueue(redis, q);
    const pool = await Pool.create(config.concurrency, config.tasksModule, log);
    const worker = new Worker({ ...config, queues }, log, redis, blocking, sub, pool);
    await worker.canceller.start();
    worker.leases.start();
    worker.recoverer.start();
    worker.trimmer.start();
    worker.reaper.start();
    worker.promoter.start();
    worker.fetcher.start();
    log.info(`worker ${config.workerName} runs queues [${config.queues.join(', ')}] with ${config.concurrency} slots`);
    return worker;
  }

  get name(): string {
    return this.config.workerName;
  }

  /**
   * Stop: take no new work, give running tasks `graceMs` to finish, then stop the rest by
   * force and hand them back to the queue for another worker. A call with no grace while a
   * stop waits (the second signal) ends the wait at once: the tasks are handed back all the same.
   */
  stop(graceMs: number): Promise<void> {
    if (graceMs <= 0) {
      this.forced = true;
      this.forceStop?.();
      this.fetcher.force();
    }
    this.stopped ??= this.shutdown(graceMs);
    return this.stopped;
  }

  private async shutdown(graceMs: number): Promise<void> {
    this.recoverer.stop();
    this.reaper.stop();
    this.promoter.stop();
    await this.fetcher.stop();
    // Read but never claimed (their records are still PENDING): back on their queues at
    // once rather than left for the reclaimer.
    for (const d of this.runner.takeWaiting()) {
      await requeueUnclaimed(this.redis, d);
      this.trimmer.touch(d.queue);
    }
    await this.waitForRunning(graceMs);
    // The leases are renewed until here: a grace period longer than a lease must not let
    // another worker take the tasks still running.
    this.leases.stop();
    await this.trimmer.stop();
    await this.pool.close();
    await Promise.allSettled([this.redis.quit(), this.canceller.stop()]);
    this.log.info(`worker ${this.config.workerName} stopped`);
  }

  /** Wait up to `graceMs` for the running tasks, then hand the rest back to their queues. */
  private async waitForRunning(graceMs: number): Promise<void> {
    const { running } = this.runner;
    if (running.size === 0) return;
    this.log.info(`waiting up to ${graceMs}ms for ${running.size} running task(s)`);
    const idle = this.runner.idle();
    const timeout = new Promise<'timeout'>((r) => {
      this.forceStop = () => r('timeout');
      if (this.forced) r('timeout');
      setTimeout(() => r('timeout'), graceMs).unref();
    });
    if ((await Promise.race([idle, timeout])) === 'timeout') {
      this.log.info(`handing ${running.size} unfinished task(s) back to the queue`);
      this.runner.handBackRunning();
      await idle;
    }
  }
}
