/**
 * The handler threads of a worker, started as they are needed. Each thread runs one task
 * at a time (so killing it stops only that task), but a thread is not tied to a slot: a
 * slot borrows an idle thread for each task. Fast handlers therefore share a few threads
 * (a thread costs ~10 MB and ~100 ms of CPU to start), while slow ones get a thread each,
 * up to the worker's concurrency: a task that waits longer than `spawnAfterMs` for a thread
 * gets a new one. Threads idle for `idleMs` are retired, down to `min`.
 */
import type { Logger } from '../log.js';
import { HandlerThread } from './handlerThread.js';

export interface ThreadOptions {
  /** The most threads at once: the worker's concurrency. */
  max: number;
  /** Threads kept even when idle (the first is started before the worker takes work). */
  min: number;
  /** Start another thread for a task that has waited this long for one. */
  spawnAfterMs: number;
  /** Retire a thread idle for this long (while more than `min` live). */
  idleMs: number;
}

export const THREAD_DEFAULTS: Omit<ThreadOptions, 'max'> = { min: 1, spawnAfterMs: 5, idleMs: 30_000 };

/** A thread; undefined when the wait was cancelled or the pool closed; an Error when no
 * thread could be started. */
export type Lent = HandlerThread | Error | undefined;

interface Waiter {
  since: number;
  give: (lent: Lent) => void;
}

export interface Borrow {
  thread: Promise<Lent>;
  cancel(): void;
}

export class HandlerThreads {
  private readonly all = new Set<HandlerThread>();
  /** Idle threads, most recently used last (taken first; the first ones retire first). */
  private readonly idle: HandlerThread[] = [];
  private readonly waiters: Waiter[] = [];
  private spawning = 0;
  private timer: NodeJS.Timeout | undefined;
  private checkQueued = false;
  private readonly retire: NodeJS.Timeout;
  private closed = false;

  private constructor(
    private readonly tasksModule: string,
    private readonly options: ThreadOptions,
    private readonly log: Logger,
  ) {
    this.retire = setInterval(() => this.retireIdle(), Math.max(1000, options.idleMs / 2));
    this.retire.unref();
  }

  /** Starts `min` threads first, so a tasks module that cannot load fails the worker at once. */
  static async start(tasksModule: string, options: ThreadOptions, log: Logger): Promise<HandlerThreads> {
    const threads = new HandlerThreads(tasksModule, options, log);
    const first = await Promise.all(
      Array.from({ length: Math.max(1, Math.min(options.min, options.max)) }, () => HandlerThread.spawn(tasksModule)),
    ).catch((err: Error) => {
      clearInterval(threads.retire);
      throw err;
    });
    for (const t of first) {
      threads.all.add(t);
      threads.idle.push(t);
    }
    return threads;
  }

  /** Threads alive now (busy or idle). */
  get size(): number {
    return this.all.size;
  }

  /** An idle thread now, or the first one to become free, or a new one. */
  borrow(): Borrow {
    const idle = this.idle.pop();
    if (idle) return { thread: Promise.resolve(idle), cancel: () => {} };
    let waiter!: Waiter;
    const thread = new Promise<Lent>((give) => (waiter = { since: Date.now(), give }));
    if (this.closed) waiter.give(undefined);
    else {
      this.waiters.push(waiter);
      this.check();
    }
    return {
      thread,
      cancel: () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        waiter.give(undefined);
      },
    };
  }

  /** Give a thread back after its task settled; a dead one is dropped. */
  giveBack(thread: HandlerThread): void {
    if (!thread.alive) {
      this.all.delete(thread);
      this.check();
      return;
    }
    if (this.closed) {
      void this.stopThread(thread);
      return;
    }
    const w = this.waiters.shift();
    if (w) w.give(thread);
    else this.idle.push(thread);
  }

  /** Stop every thread, running handlers included; waiting borrowers get no thread. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.retire);
    clearTimeout(this.timer);
    for (const w of this.waiters.splice(0)) w.give(undefined);
    this.idle.length = 0;
    await Promise.all([...this.all].map((t) => this.stopThread(t)));
  }

  private async stopThread(t: HandlerThread): Promise<void> {
    this.all.delete(t);
    await t.kill('shutdown');
  }

  /**
   * Start threads for the tasks that have waited too long. Decided in the check phase of
   * the event loop, after messages from the threads were handled, so a busy main loop
   * does not mistake "done, not yet read" for "still running" and start threads for nothing.
   */
  private check(): void {
    if (this.checkQueued || this.closed) return;
    this.checkQueued = true;
    setImmediate(() => {
      this.checkQueued = false;
      this.spawnForWaiters();
    });
  }

  private spawnForWaiters(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.closed || this.waiters.length === 0) return;
    const now = Date.now();
    const room = this.options.max - this.all.size - this.spawning;
    // Nothing running would ever free a thread: start one at once.
    let due = this.all.size === 0 ? this.waiters.length : 0;
    if (!due) while (due < this.waiters.length && now - this.waiters[due]!.since >= this.options.spawnAfterMs) due++;
    const n = Math.min(room, due - this.spawning);
    for (let i = 0; i < n; i++) this.spawnOne();
    const next = this.waiters[Math.max(due, this.spawning)];
    if (next && room > n) this.timer = setTimeout(() => this.check(), Math.max(1, next.since + this.options.spawnAfterMs - now));
  }

  private spawnOne(): void {
    this.spawning++;
    HandlerThread.spawn(this.tasksModule).then(
      (t) => {
        this.spawning--;
        if (this.closed) return void t.kill('shutdown');
        this.all.add(t);
        this.giveBack(t);
      },
      (err: Error) => {
        this.spawning--;
        this.log.error(`could not start a handler thread: ${err.message}`);
        // With no thread left to wait for, the waiting tasks fail (and are retried or
        // failed by their attempts) rather than wait for ever.
        if (this.all.size === 0 && this.spawning === 0) for (const w of this.waiters.splice(0)) w.give(err);
      },
    );
  }

  private retireIdle(): void {
    const cutoff = Date.now() - this.options.idleMs;
    while (this.all.size > this.options.min && this.idle.length > 0 && this.idle[0]!.idleSince < cutoff) {
      void this.stopThread(this.idle.shift()!);
    }
  }
}
