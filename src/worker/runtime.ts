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
import type { LogFields, Logger } from '../log.js';
import { checkEvictionPolicy, connectReady, isConnectionError, isPassingRefusal } from '../redis.js';
import { AttemptStore, type Delivery, type EndFields, type EndState, type Taken } from '../store/attemptStore.js';
import type { RunnableTask } from '../store/record.js';
import { childSpan, parseTraceparent, traceFields } from '../trace.js';
import { type CancelMode, Canceller } from './canceller.js';
import { ConsumerReaper } from './consumerReaper.js';
import { LeaseKeeper, leaseTick } from './leaseKeeper.js';
import { Pool } from './pool.js';
import { Promoter } from './promoter.js';
import { Recoverer } from './recoverer.js';
import { backoffMs, shouldRetry } from './retryPolicy.js';
import type { Outcome, Slot } from './slot.js';
import { StreamTrimmer } from './streamTrimmer.js';

interface Running {
  delivery: Delivery;
  token: string;
  slot: Slot;
  cancel?: CancelMode;
}


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export type WorkerConfig = Pick<
  Config,
  'redisUrl' | 'queues' | 'concurrency' | 'tasksModule' | 'workerName' | 'resultTtlMs' | 'eventLogCap' | 'leaseMs'
>;

export class Worker {
  private readonly running = new Map<string, Running>();
  /** Messages received beyond the free slots (several queues read at once). */
  private readonly backlog: Delivery[] = [];
  /** Which queue gets the larger share of the free slots in the next takeNow. */
  private takeTurn = 0;
  /** Slots promised to the takes in flight: what they begin must find a slot. */
  private reserved = 0;
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
  private idleWaiters: (() => void)[] = [];

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
    this.recoverer = new Recoverer(
      redis,
      config.workerName,
      config.queues,
      config.leaseMs,
      this,
      log,
    );
    this.trimmer = new StreamTrimmer(redis, log);
    this.leases = new LeaseKeeper(
      redis,
      config.workerName,
      config.leaseMs,
      () => [...[...this.running.values()].map((r) => r.delivery), ...this.backlog],
      (id, mode) => this.canceller.apply(id, mode),
      log,
    );
    this.promoter = new Promoter(redis, config.queues, leaseTick(config.leaseMs), log);
    this.canceller = new Canceller(
      sub,
      config.queues,
      (id) => this.running.get(id),
      (due) => this.promoter.promoteAt(due),
      log,
    );
    this.reaper = new ConsumerReaper(redis, config.workerName, config.queues, config.leaseMs, log);
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
      if (this.free <= 0 || (this.drained && this.takes.size > 0)) {
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
        const deliveries = await this.consumer.read(Math.max(1, Math.ceil(this.free / queues)), 2000);
        this.drained = false;
        // Read as a stop began: not claimed, so handed straight back (stop() does it).
        if (this.stopping) this.backlog.push(...deliveries);
        else for (const d of deliveries) this.dispatch(d);
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
    const free = this.free;
    if (free <= 0 || this.stopping) return undefined;
    const { queues } = this.config;
    const calls: Promise<void>[] = [];
    const first = this.takeTurn++ % queues.length;
    // The slots are held for these calls: the reclaimer, a blocking read and the next take,
    // which also fill free slots, must not take them meanwhile. Each is let go as a task
    // begun takes it, the rest once the calls answered (a task begun by a part that answers
    // after another part failed takes a slot as any other would).
    this.reserved += free;
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
          if (!settled) {
            this.reserved--;
            held--;
          }
          this.dispatch(t.d, t);
        }),
      );
    }
    const answers = await Promise.allSettled(calls);
    settled = true;
    this.reserved -= held;
    const failed = answers.find((a) => a.status === 'rejected');
    if (failed) throw failed.reason;
    return free - held;
  }

  /** Slots neither running a task, nor promised to a message waiting here or to a takeNow in flight. */
  get free(): number {
    return this.pool.free - this.backlog.length - this.reserved;
  }

  /** Runs a delivery in a free slot (`taken`: already begun by takeNow), or keeps it for the next free one. */
  deliver(d: Delivery): void {
    this.dispatch(d);
  }

  private dispatch(d: Delivery, taken?: Taken): void {
    const slot = this.pool.take();
    if (!slot) {
      // takeNow takes no more than the slots it holds, so a begun task always finds one.
      if (taken) this.log.error(`task ${d.id}: begun with no free slot; it runs again when its lease runs out`);
      else this.backlog.push(d);
      return;
    }
    void this.execute(d, slot, taken);
  }

  private slotFreed = () => {
    const next = this.backlog.shift();
    if (next) this.dispatch(next);
    this.wakeLoop();
    if (this.running.size === 0) for (const w of this.idleWaiters.splice(0)) w();
  };

  private async execute(d: Delivery, slot: Slot, taken?: Taken): Promise<void> {
    const token = taken?.token ?? randomUUID();
    let released = false;
    try {
      // A task begun by takeNow is not awaited: it is `running` (its lease renewed, a stop
      // waits for it) from the moment it is dispatched.
      const claim = taken ? taken.claim : await this.attempts.claim(d, token);
      if (claim instanceof Error) throw claim;
      if (!claim.run) return;
      const task = claim.task;
      // Each attempt is a span of the trace the Start request began (see src/trace.ts).
      const parent = parseTraceparent(task.traceparent);
      // The fields every line about this attempt carries (passed per line: a child logger
      // per task would cost more than the one line it writes).
      const about: LogFields = {
        task_id: task.id,
        task: task.name,
        attempt: task.attempt,
        ...(parent ? traceFields(childSpan(parent)) : {}),
      };
      this.log.debug('task started', about);
      const run: Running = { delivery: d, token, slot };
      this.running.set(d.id, run);
      const began = Date.now();
      const outcome = await this.runInSlot(task, run);
      const [state, fields] = this.decide(task, outcome);
      // The handler is done: the slot is free once its finish is queued. The finish goes in
      // this turn's script call, before the claims and reads of the same turn (AttemptStore),
      // so the next task shares its round trip and still never runs ahead of a free slot in
      // Redis. (The task stays in `running`, its lease renewed, until the finish is written.)
      const writing = this.finish(d, token, state, fields);
      released = true;
      this.pool.release(slot);
      this.slotFreed();
      const written = await writing;
      if (written === 'RETRY' && fields.nextAttemptAt) this.promoter.promoteAt(fields.nextAttemptAt);
      const ms = Date.now() - began;
      if (written) {
        // The line says what the record says: a cancel requested during the run ends it
        // REVOKED whatever the handler threw (its AbortError is not what the task shows).
        const revoked = written === 'REVOKED';
        const error = revoked ? { error_type: 'TaskRevokedError' } : { error_type: fields.errorType, error_message: fields.errorMessage };
        this.log.info(`task ${written.toLowerCase()} in ${ms}ms`, { ...about, state: written, ms, ...error });
        if (!revoked && fields.traceback) this.log.debug('task traceback', { ...about, traceback: fields.traceback });
      }
    } catch (err) {
      // The message stays pending; when its lease runs out it is reclaimed and retried.
      this.log.error(`task ${d.id}: ${(err as Error).message}`);
    } finally {
      // Its message was acknowledged (by the claim or the finish), or will be by another
      // worker: either way the stream may be trimmed.
      this.trimmer.touch(d.queue);
      this.running.delete(d.id);
      if (!released) this.pool.release(slot);
      this.slotFreed();
    }
  }

  private async runInSlot(task: RunnableTask, run: Running): Promise<Outcome> {
    const limit = task.timeLimitMs
      ? setTimeout(() => void run.slot.kill('time_limit'), task.timeLimitMs)
      : undefined;
    try {
      const outcome = run.slot.run(
        {
          type: 'run',
          id: task.id,
          name: task.name,
          args: task.argsJson,
          kwargs: task.kwargsJson,
          attempt: task.attempt,
        },
        (json) => {
          this.attempts.progress(run.delivery, run.token, json).catch((err: Error) => {
            this.log.warn(`task ${task.id}: progress not recorded: ${err.message}`);
          });
        },
      );
      // A cancel pushed while the claim was in flight found nothing running: apply it now.
      this.canceller.began(task.id);
      return await outcome;
    } finally {
      clearTimeout(limit);
    }
  }

  /** The state an attempt ends in. A cancel request overrides it in the finish script. */
  private decide(task: RunnableTask, outcome: Outcome): [EndState, EndFields] {
    switch (outcome.kind) {
      case 'returned':
        return ['SUCCESS', { result: outcome.result }];
      case 'killed':
        if (outcome.why === 'shutdown') return ['PENDING', {}];
        if (outcome.why === 'terminate') {
          return ['REVOKED', { errorType: 'TaskRevokedError', errorMessage: 'terminated by a cancel request' }];
        }
        return [
          'FAILURE',
          {
            errorType: 'TimeLimitExceeded',
            errorMessage: `the task ran past its hard time limit of ${(task.timeLimitMs ?? 0) / 1000}s and was stopped`,
          },
        ];
      case 'crashed':
        return this.failOrRetry(task, { type: 'WorkerLostError', message: `the handler thread died: ${outcome.message}` });
      case 'threw':
        return this.failOrRetry(task, outcome.error);
    }
  }

  private failOrRetry(task: RunnableTask, error: { type: string; message: string; traceback?: string }): [EndState, EndFields] {
    const fields: EndFields = { errorType: error.type, errorMessage: error.message, traceback: error.traceback };
    if (!shouldRetry(task, error.type)) return ['FAILURE', fields];
    return ['RETRY', { ...fields, nextAttemptAt: Date.now() + backoffMs(task) }];
  }

  /**
   * Write the end of an attempt, riding out a Redis outage or a Redis that refuses writes
   * for a while (out of memory, failover): tried again until it is written or the script
   * says the attempt is stale (its lease was lost). Returns the state written, or undefined
   * when the attempt was stale. The first try is queued for this turn by the time this
   * returns its promise.
   */
  private async finish(d: Delivery, token: string, state: EndState, fields: EndFields): Promise<string | undefined> {
    for (let wait = 100, warned = false; ; wait = Math.min(wait * 2, 2000)) {
      try {
        const r = await this.attempts.finish(d, token, state, fields);
        if (!r.written) this.log.warn(`task ${d.id}: result of a stale attempt discarded (task is ${r.state})`);
        return r.written ? r.state : undefined;
      } catch (err) {
        if (!isConnectionError(err) && !isPassingRefusal(err)) throw err;
        if (!warned && isPassingRefusal(err)) {
          this.log.warn(`task ${d.id}: Redis refused its ${state} (${(err as Error).message}); trying again until it is written`);
          warned = true;
        }
        await sleep(wait);
      }
    }
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
    for (const d of this.backlog.splice(0)) await this.handBackUnclaimed(d);
    if (this.running.size > 0) {
      this.log.info(`waiting up to ${graceMs}ms for ${this.running.size} running task(s)`);
      const idle = new Promise<void>((r) => this.idleWaiters.push(r));
      const timeout = new Promise<'timeout'>((r) => {
        this.forceStop = () => r('timeout');
        if (this.forced) r('timeout');
        setTimeout(() => r('timeout'), graceMs).unref();
      });
      if ((await Promise.race([idle, timeout])) === 'timeout') {
        this.log.info(`handing ${this.running.size} unfinished task(s) back to the queue`);
        for (const run of this.running.values()) void run.slot.kill('shutdown');
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
