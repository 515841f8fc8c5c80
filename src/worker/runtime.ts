/**
 * A worker: reads its queues through the consumer group, runs each task in a free slot,
 * writes every state change, renews the leases of what it holds, takes over tasks of dead
 * workers, promotes due scheduled tasks, and hears cancel requests. It fetches only when
 * a slot is free, so nothing waits in a worker that could run elsewhere.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { Consumer, ensureGroups } from '../broker/consumer.js';
import { requeueUnclaimed } from '../broker/requeue.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { checkEvictionPolicy, connectReady } from '../redis.js';
import { AttemptStore, type Delivery } from '../store/attemptStore.js';
import { Canceller } from './canceller.js';
import { ConsumerReaper } from './consumerReaper.js';
import { LeaseKeeper, leaseTick } from './leaseKeeper.js';
import { Pool } from './pool.js';
import { Promoter } from './promoter.js';
import { Recoverer } from './recoverer.js';
import { Runner } from './runner.js';
import { StreamTrimmer } from './streamTrimmer.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export type WorkerConfig = Pick<
  Config,
  'redisUrl' | 'queues' | 'concurrency' | 'tasksModule' | 'workerName' | 'resultTtlMs' | 'eventLogCap' | 'leaseMs'
>;

export class Worker {
  private readonly runner: Runner;
  /** Which queue gets the larger share of the free slots in the next takeNow. */
  private takeTurn = 0;
  /** The takes in flight (takeNow), each until it answered. */
  private readonly takes = new Set<Promise<number | undefined>>();
  /** A take found the queues empty: read them blocking (once no take is in flight). */
  private drained = false;
  /** Why the last take failed, for the fetch loop to report. */
  private takeFailed: Error | undefined;
  private readonly attempts: AttemptStore;
  private readonly consumer: Consumer;
  private readonly recoverer: Recoverer;
  private readonly trimmer: StreamTrimmer;
  private readonly reaper: ConsumerReaper;
  private readonly leases: LeaseKeeper;
  private readonly promoter: Promoter;
  private readonly canceller: Canceller;
  private stopping = false;
  private stopped: Promise<void> | undefined;
  /** Ends the grace period now (a second signal). */
  private forceStop: (() => void) | undefined;
  private forced = false;
  private wake: (() => void) | undefined;
  private loopDone: Promise<void> = Promise.resolve();

  private constructor(
    private readonly config: WorkerConfig,
    private readonly log: Logger,
    private readonly redis: Redis,
    blocking: Redis,
    sub: Redis,
    private readonly pool: Pool,
  ) {
    this.attempts = new AttemptStore(redis, config.workerName, config);
    this.consumer = new Consumer(blocking, config.workerName, config.queues);
    const { workerName: self, queues, leaseMs } = config;
    this.trimmer = new StreamTrimmer(redis, log);
    this.promoter = new Promoter(redis, queues, leaseTick(leaseMs), log);
    this.canceller = new Canceller(sub, queues, (id) => this.runner.running.get(id), (due) => this.promoter.promoteAt(due), log);
    this.runner = new Runner({
      attempts: this.attempts,
      pool,
      canceller: this.canceller,
      trimmer: this.trimmer,
      promoter: this.promoter,
      log,
      slotFreed: () => this.wakeLoop(),
    });
    this.recoverer = new Recoverer(redis, self, queues, leaseMs, this.runner, log);
    this.leases = new LeaseKeeper(redis, self, leaseMs, () => this.runner.held(), (id, mode) => this.canceller.apply(id, mode), log);
    this.reaper = new ConsumerReaper(redis, self, queues, leaseMs, log);
  }

  static async start(config: WorkerConfig, log: Logger): Promise<Worker> {
    const url = config.redisUrl!;
    // No auto-pipelining: the worker batches its own commands (its writes of a turn go as one
    // script call per queue, AttemptStore), and ioredis's pipeline per tick only added CPU.
    // Commands still reach Redis in the order issued.
    const redis = await connectReady(url, 'worker', { queueWhileDown: true, noPipelining: true });
    const blocking = await connectReady(url, 'worker-read', { queueWhileDown: true, noPipelining: true });
    const sub = await connectReady(url, 'worker-control', { queueWhileDown: true, noPipelining: true });
    await checkEvictionPolicy(redis, log);
    await ensureGroups(redis, config.queues);
    const pool = await Pool.create(config.concurrency, config.tasksModule, log);
    const worker = new Worker(config, log, redis, blocking, sub, pool);
    await worker.canceller.start();
    worker.begin();
    log.info(`worker ${config.workerName} runs queues [${config.queues.join(', ')}] with ${config.concurrency} slots`);
    return worker;
  }

  get name(): string {
    return this.config.workerName;
  }

  private begin(): void {
    this.leases.start();
    this.recoverer.start();
    this.trimmer.start();
    this.reaper.start();
    this.promoter.start();
    this.loopDone = this.fetchLoop();
  }

  /**
   * Fill free slots until a stop. Each turn that frees slots sends a take for them with its
   * finishes, without waiting for the takes already in flight: so Redis runs one turn's call
   * while the worker runs what the last one began, as a worker with one call per slot would.
   * Only when a take found the queues empty, and the others have answered, does the loop
   * block on the reader's own connection.
   */
  private async fetchLoop(): Promise<void> {
    const queues = this.config.queues.length;
    while (!this.stopping) {
      if (this.takeFailed) {
        const err = this.takeFailed;
        this.takeFailed = undefined;
        await this.readFailed(err);
        continue;
      }
      if (this.runner.free <= 0 || (this.drained && this.takes.size > 0)) {
        await this.nextWake();
        continue;
      }
      const look = this.recoverer.lookFirst();
      if (look) {
        await look.catch((err: Error) => this.log.warn(err.message));
        continue;
      }
      if (!this.drained) {
        // What is there now, read and begun in the script call that carries this turn's
        // finishes, sized when it goes out by every slot they free.
        await this.attempts.atTurnEnd(async () => void this.track(this.takeNow()));
        continue;
      }
      try {
        const deliveries = await this.consumer.read(Math.max(1, Math.ceil(this.runner.free / queues)), 2000);
        this.drained = false;
        // Read as a stop began: not claimed, so handed straight back (stop() does it).
        for (const d of deliveries) {
          if (this.stopping) this.runner.keep(d);
          else this.runner.deliver(d);
        }
      } catch (err) {
        if (this.stopping) break;
        await this.readFailed(err as Error);
      }
    }
    // What the takes in flight begin runs all the same (the stop waits for it).
    await Promise.allSettled(this.takes);
  }

  /** Keep `take` (a takeNow in flight) until it answers; a take that began nothing means the queues are empty. */
  private track(take: Promise<number | undefined>): void {
    this.takes.add(take);
    take
      .then(
        (began) => {
          if (began === 0) this.drained = true;
        },
        (err: Error) => (this.takeFailed = err),
      )
      .finally(() => {
        this.takes.delete(take);
        this.wakeLoop();
      });
  }

  private async readFailed(err: Error): Promise<void> {
    this.log.warn(`reading the queues failed: ${err.message}`);
    // A Redis that lost its data (restarted empty, failed over to a replica that lagged)
    // has no consumer group: make it again, or this worker would never read a queue again.
    if (err.message.includes('NOGROUP')) await ensureGroups(this.redis, this.config.queues).catch(() => {});
    await sleep(500);
  }

  private nextWake(): Promise<void> {
    return new Promise<void>((r) => (this.wake = r));
  }

  private wakeLoop(): void {
    this.wake?.();
    this.wake = undefined;
  }

  /**
   * Read, begin and run as many tasks as there are free slots, no more: the free slots are
   * shared out over the queues (the first queue to get a larger share turns with each call),
   * one take per queue. Returns how many it began, or undefined when no slot was free (or a
   * stop began since the take was planned: it begins nothing new).
   */
  private async takeNow(): Promise<number | undefined> {
    const free = this.runner.free;
    if (free <= 0 || this.stopping) return undefined;
    const { queues } = this.config;
    const calls: Promise<void>[] = [];
    const first = this.takeTurn++ % queues.length;
    // The slots are held for these calls: the reclaimer, a blocking read and the next take,
    // which also fill free slots, must not take them meanwhile. Each is let go as a task
    // begun takes it, the rest once the calls answered (a task begun by a part that answers
    // after another part failed takes a slot as any other would).
    this.runner.reserve(free);
    let held = free;
    let settled = false;
    for (let i = 0; i < queues.length; i++) {
      const q = (first + i) % queues.length;
      const share = Math.floor(free / queues.length) + (i < free % queues.length ? 1 : 0);
      if (share === 0) continue;
      const tokens = Array.from({ length: share }, () => randomUUID());
      // Each begun task goes to its slot as soon as its call answers (ahead of the
      // bookkeeping of the tasks that call finished; a busy turn's take rides in several
      // calls). Begun already, so it runs even if a stop began meanwhile (the stop waits).
      calls.push(
        this.attempts.take(queues[q]!, tokens, (t) => {
          if (!settled) held--;
          this.runner.begin(t, !settled);
        }),
      );
    }
    const answers = await Promise.allSettled(calls);
    settled = true;
    this.runner.unreserve(held);
    const failed = answers.find((a) => a.status === 'rejected');
    if (failed) throw failed.reason;
    return free - held;
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
    }
    this.stopped ??= this.shutdown(graceMs);
    return this.stopped;
  }

  private async shutdown(graceMs: number): Promise<void> {
    this.stopping = true;
    this.reaper.stop();
    this.promoter.stop();
    this.recoverer.stop();
    this.consumer.close();
    this.wakeLoop();
    await this.loopDone;
    for (const d of this.runner.takeWaiting()) await this.handBackUnclaimed(d);
    const { running } = this.runner;
    if (running.size > 0) {
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
    this.leases.stop();
    await this.trimmer.stop();
    await this.pool.close();
    await Promise.allSettled([this.redis.quit(), this.canceller.stop()]);
    this.log.info(`worker ${this.config.workerName} stopped`);
  }

  /** A message read but never claimed (its record is still PENDING): put it back on the
   * queue at once rather than leave it for the reclaimer. (Its old entry goes with the next
   * trim.) */
  private async handBackUnclaimed(d: Delivery): Promise<void> {
    await requeueUnclaimed(this.redis, d);
    this.trimmer.touch(d.queue);
  }
}
