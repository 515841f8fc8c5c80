/**
 * The handler threads of a worker, started as they are needed. Each thread runs one task
 * at a time (so stopping a task by force stops only that task, see handlerThread.ts), but
 * tasks are not tied to threads: a task goes to the thread where it would wait least, and
 * waits there behind the ones posted before it. Fast handlers therefore share a thread or
 * two (a thread costs memory and CPU to start) with no round trip through the
 * main thread between tasks; slow ones get a thread each, up to the worker's concurrency:
 *
 * - a task goes to the thread where it would start soonest, at the threads' recent handler
 *   times; when that is later than `spawnAfterMs` on a thread busy most of the time, a new
 *   thread is started for it (a burst queued on a mostly idle thread clears faster than a
 *   thread starts), and the queues are shared out again when it is ready;
 * - a task queued behind one seen running longer than `spawnAfterMs` at two checks in a
 *   row (one stall of a busy machine is not enough) is taken back and goes elsewhere (to a
 *   new thread when needed);
 * - threads idle for `idleMs` are retired, down to `min`.
 */
import type { Logger } from '../log.js';
import { HandlerThread } from './handlerThread.js';
import type { Job, KillReason, Outcome } from './job.js';
import type { RunMessage } from './protocol.js';

export interface ThreadOptions {
  /** The most threads at once: the worker's concurrency. */
  max: number;
  /** Threads kept even when idle (the first is started before the worker takes work). */
  min: number;
  /** The longest a task should wait for a thread before another is started for it. */
  spawnAfterMs: number;
  /** Retire a thread idle for this long (while more than `min` live). */
  idleMs: number;
}

export const THREAD_DEFAULTS: Omit<ThreadOptions, 'max'> = { min: 1, spawnAfterMs: 20, idleMs: 30_000 };

/** Threads started at once, at most: starting one is CPU-bound (~100 ms), so more at once
 * would not start them sooner, and a burst of waiting tasks that an existing thread is
 * about to take anyway does not start a crowd of threads. */
const SPAWNING_AT_ONCE = 2;

/** A thread busy this share of the time, with a queue, is worth another thread. */
const BUSY = 0.5;

/** A submitted task: its outcome, and the two ways to stop it. */
export interface Run {
  outcome: Promise<Outcome>;
  /** Fire its AbortSignal (now, or as it starts). */
  abort(reason: string): void;
  /** Stop it by force; its outcome is `killed` unless it had already finished. */
  kill(why: KillReason): void;
}

export class HandlerThreads {
  private readonly threads = new Set<HandlerThread>();
  /** Jobs waiting for a thread, in submission order. */
  private readonly waiting: Job[] = [];
  private spawning = 0;
  private seq = 0;
  /** Tasks each thread may hold at once (its queue plus the running one). */
  private readonly cells: number;
  private timer: NodeJS.Timeout | undefined;
  private readonly retire: NodeJS.Timeout;
  private closed = false;

  private constructor(
    private readonly tasksModule: string,
    private readonly options: ThreadOptions,
    private readonly log: Logger,
  ) {
    this.cells = Math.max(1, Math.min(options.max, 256));
    this.retire = setInterval(() => this.retireIdle(), Math.max(1000, options.idleMs / 2));
    this.retire.unref();
  }

  /** Starts `min` threads first, so a tasks module that cannot load fails the worker at once. */
  static async start(tasksModule: string, options: ThreadOptions, log: Logger): Promise<HandlerThreads> {
    const pool = new HandlerThreads(tasksModule, options, log);
    try {
      const first = await Promise.all(Array.from({ length: Math.max(1, Math.min(options.min, options.max)) }, () => pool.spawnThread()));
      for (const t of first) pool.threads.add(t);
      pool.inlineTasks = first[0]?.inlineTasks ?? [];
    } catch (err) {
      await pool.close();
      throw err;
    }
    return pool;
  }

  /** The tasks defined as inline, as the first thread's registry says. */
  inlineTasks: readonly string[] = [];

  /** Threads alive now. */
  get size(): number {
    return this.threads.size;
  }

  submit(message: Omit<RunMessage, 'type' | 'cell' | 'tag'> & { type?: 'run' }, onProgress: (json: string) => void): Run {
    let settle!: (o: Outcome) => void;
    const outcome = new Promise<Outcome>((r) => (settle = r));
    let settled = false;
    const job: Job = {
      message: { ...message, type: 'run' },
      onProgress,
      settle: (o) => {
        if (settled) return;
        settled = true;
        settle(o);
      },
      seq: this.seq++,
    };
    if (this.closed) job.settle({ kind: 'killed', why: 'shutdown' });
    else this.place([job]);
    return {
      outcome,
      abort: (reason) => {
        if (settled) return;
        // Kept with the job as well as told to its thread: a job taken back before it
        // started (moved off a thread stuck behind a long task, or off a killed one) is
        // posted elsewhere from its message, and must start there already cancelled.
        job.message.aborted ??= reason;
        job.thread?.abort(job, reason);
      },
      kill: (why) => {
        if (settled) return;
        job.killedWith ??= why;
        if (job.thread) return job.thread.kill(job, why);
        const i = this.waiting.indexOf(job);
        if (i >= 0) this.waiting.splice(i, 1);
        job.settle({ kind: 'killed', why });
      },
    };
  }

  /** Stop every thread, running handlers included; waiting tasks settle as killed. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.retire);
    clearTimeout(this.timer);
    for (const job of this.waiting.splice(0)) job.settle({ kind: 'killed', why: 'shutdown' });
    await Promise.all([...this.threads].map((t) => t.stop()));
    this.threads.clear();
  }

  /** Post each job (oldest first) where it waits least, or keep it waiting for a new thread. */
  private place(jobs: Job[]): void {
    if (this.closed) {
      for (const job of jobs) job.settle({ kind: 'killed', why: 'shutdown' });
      return;
    }
    const queue = jobs.length > 0 ? [...this.waiting.splice(0), ...jobs].sort((a, b) => a.seq - b.seq) : this.waiting.splice(0);
    const room = this.options.max - this.threads.size - this.spawning;
    for (const job of queue) {
      let best: HandlerThread | undefined;
      for (const t of this.threads) {
        if (!t.hasRoom || t.stuck) continue;
        if (!best || t.expectedWaitMs < best.expectedWaitMs) best = t;
      }
      const worthAThread = best && best.expectedWaitMs >= this.options.spawnAfterMs && best.utilization >= BUSY && room > 0;
      if (best && !worthAThread) best.post(job);
      else this.waiting.push(job);
    }
    // One new thread per task that found no place, as far as the concurrency allows.
    const want = Math.min(this.waiting.length - this.spawning, room, SPAWNING_AT_ONCE - this.spawning);
    for (let i = 0; i < want; i++) this.spawnForWaiting();
    this.arm();
  }

  private spawnThread(): Promise<HandlerThread> {
    return HandlerThread.spawn(
      this.tasksModule,
      this.cells,
      (jobs) => this.place(jobs),
      () => this.onSettled(),
    );
  }

  private spawnForWaiting(): void {
    this.spawning++;
    this.spawnThread().then(
      (t) => {
        this.spawning--;
        if (this.closed) return void t.stop();
        // Share out what waits on the other threads (not started yet), the new one included.
        const moved: Job[] = [];
        for (const other of this.threads) {
          t.averageMs = Math.max(t.averageMs, other.averageMs);
          if (other.load > 1) moved.push(...other.withdrawQueued());
        }
        this.threads.add(t);
        this.log.debug(`started handler thread ${this.threads.size} of at most ${this.options.max}`);
        this.place(moved);
      },
      (err: Error) => {
        this.spawning--;
        this.log.error(`could not start a handler thread: ${err.message}`);
        // With no thread to wait for, waiting tasks fail (retried or failed by their
        // attempts) rather than wait for ever.
        if (this.threads.size === 0 && this.spawning === 0) {
          for (const job of this.waiting.splice(0)) {
            job.settle({ kind: 'crashed', message: `no handler thread could be started: ${err.message}` });
          }
        }
      },
    );
  }

  /** A task settled somewhere: a dead thread leaves, and waiting tasks may now have a place. */
  private onSettled(): void {
    for (const t of this.threads) if (!t.alive && t.load === 0) this.threads.delete(t);
    if (this.waiting.length > 0) this.place([]);
  }

  /** While tasks are queued behind others, look every `spawnAfterMs` for ones stuck behind
   * a long task, and move them. */
  private arm(): void {
    if (this.timer || this.closed) return;
    let queuedBehind = this.waiting.length > 0;
    for (const t of this.threads) if (t.load > 1) queuedBehind = true;
    if (!queuedBehind) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const moved: Job[] = [];
      for (const t of this.threads) {
        if (t.load > 1 && t.checkStuck(this.options.spawnAfterMs)) moved.push(...t.withdrawQueued());
      }
      this.place(moved);
    }, this.options.spawnAfterMs);
  }

  private retireIdle(): void {
    const cutoff = Date.now() - this.options.idleMs;
    for (const t of this.threads) {
      if (this.threads.size <= this.options.min) return;
      if (t.load === 0 && t.idleSince < cutoff) {
        this.threads.delete(t);
        void t.stop();
      }
    }
  }
}
