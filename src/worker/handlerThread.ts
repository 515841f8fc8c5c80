/**
 * The main thread's side of one handler thread: tasks posted to it (run one at a time, in
 * order, by thread.ts), their results, and stopping one of them by force. Killing a task
 * terminates the thread only when that task is the one running, after making sure the
 * thread starts nothing else (protocol.ts); the tasks still queued on it are withdrawn and
 * handed back to be run elsewhere. A dead thread is never reused.
 */
import { Worker } from 'node:worker_threads';
import type { Job, KillReason } from './job.js';
import {
  cellValue,
  clock,
  clockDiff,
  CELLS,
  HOLD,
  QUEUED,
  RUNNING,
  STARTED_AT,
  TAG_MASK,
  WITHDRAWN,
  type FromThread,
  packRun,
  type RunsMessage,
} from './protocol.js';
import { ThreadLoad } from './threadLoad.js';

export type { KillReason, Outcome } from './job.js';

interface Posted {
  job: Job;
  tag: number;
}

const threadModule = new URL(import.meta.url.endsWith('.ts') ? './thread.ts' : './thread.js', import.meta.url).href;
const threadEntry = new URL('./threadEntry.mjs', import.meta.url);

export class HandlerThread {
  /** Posted jobs by cell, in the order posted. */
  private readonly posted = new Map<number, Posted>();
  private readonly freeCells: number[];
  private readonly outbox: RunsMessage['runs'] = [];
  private nextTag = 1;
  private crashMessage: string | undefined;
  private exited = false;
  /** A task on it is being killed: it takes no more work. */
  private dying = false;
  private readonly gauge = new ThreadLoad();
  /** When it last had nothing to do (ms), for retiring idle threads. */
  idleSince = Date.now();

  private constructor(
    private readonly thread: Worker,
    private readonly shared: Int32Array,
    cells: number,
    /** Jobs taken back from this thread (not started) to be posted elsewhere. */
    private readonly handBack: (jobs: Job[]) => void,
    private readonly onSettled: () => void,
    /** The tasks its registry defines as inline (run on the main thread, not here). */
    readonly inlineTasks: readonly string[],
  ) {
    this.freeCells = Array.from({ length: cells }, (_, i) => cells - 1 - i);
    thread.on('message', (m: FromThread) => this.onMessage(m));
    thread.on('error', (err) => {
      // The thread is going down (an uncaught error in a handler); 'exit' follows.
      this.crashMessage ??= err.message;
    });
    thread.on('exit', (code) => this.onExit(code));
  }

  static spawn(tasksModule: string, cells: number, handBack: (jobs: Job[]) => void, onSettled: () => void): Promise<HandlerThread> {
    const buffer = new SharedArrayBuffer((CELLS + cells) * 4);
    const thread = new Worker(threadEntry, { workerData: { tasksModule, threadModule, shared: buffer } });
    return new Promise((resolve, reject) => {
      const onMessage = (m: FromThread) => {
        if (m.type === 'ready') {
          thread.off('message', onMessage);
          thread.off('error', reject);
          resolve(new HandlerThread(thread, new Int32Array(buffer), cells, handBack, onSettled, m.inline));
        } else if (m.type === 'fatal') {
          void thread.terminate();
          reject(new Error(m.message));
        }
      };
      thread.on('message', onMessage);
      thread.once('error', reject);
    });
  }

  get alive(): boolean {
    return !this.exited && !this.dying;
  }

  /** Jobs posted and not settled. */
  get load(): number {
    return this.posted.size;
  }

  get hasRoom(): boolean {
    return this.alive && this.freeCells.length > 0;
  }

  /** How long a job posted now would wait, going by the recent handler times. */
  get expectedWaitMs(): number {
    return this.posted.size * this.gauge.averageMs;
  }

  /** Recent handler time per task (ms); a new thread starts from its pool's figure. */
  get averageMs(): number {
    return this.gauge.averageMs;
  }

  set averageMs(ms: number) {
    this.gauge.averageMs = ms;
  }

  /** Share of the recent time this thread spent running tasks (ThreadLoad). */
  get utilization(): number {
    return this.gauge.utilization;
  }

  /** The task running now has run longer than the pool's limit at two checks in a row:
   * the tasks queued behind it should go elsewhere, and no more should come here. */
  get stuck(): boolean {
    return this.gauge.stuck;
  }

  /** The pool's periodic check: is the task running now running longer than `limitMs`?
   * Twice in a row for the same task makes the thread `stuck` (ThreadLoad.sawOverdue). */
  checkStuck(limitMs: number): boolean {
    const first = this.posted.entries().next();
    const head = first.done ? undefined : first.value;
    const overdue =
      head !== undefined &&
      Atomics.load(this.shared, CELLS + head[0]) === cellValue(head[1].tag, RUNNING) &&
      clockDiff(clock(), Atomics.load(this.shared, STARTED_AT)) > limitMs;
    return this.gauge.sawOverdue(overdue ? head[1].tag : undefined);
  }

  post(job: Job): void {
    const cell = this.freeCells.pop();
    if (cell === undefined || !this.alive) throw new Error('handler thread has no room');
    const tag = this.nextTag;
    this.nextTag = (this.nextTag + 1) & TAG_MASK || 1;
    Atomics.store(this.shared, CELLS + cell, cellValue(tag, QUEUED));
    this.posted.set(cell, { job, tag });
    job.thread = this;
    if (this.outbox.length === 0) process.nextTick(this.flush);
    packRun(this.outbox, cell, tag, job.message);
  }

  /** Send the runs posted in this tick as one message. */
  private readonly flush = () => {
    if (this.outbox.length === 0 || this.exited) return;
    this.thread.postMessage({ type: 'runs', runs: this.outbox.splice(0) } satisfies RunsMessage);
  };

  /** Take back every job not started yet (they are handed to the caller). */
  withdrawQueued(): Job[] {
    const out: Job[] = [];
    for (const [cell, p] of this.posted) {
      const queued = cellValue(p.tag, QUEUED);
      if (Atomics.compareExchange(this.shared, CELLS + cell, queued, cellValue(p.tag, WITHDRAWN)) === queued) {
        this.release(cell);
        p.job.thread = undefined;
        out.push(p.job);
      }
    }
    return out;
  }

  /** Fire a job's AbortSignal (now, or as it starts). */
  abort(job: Job, reason: string): void {
    this.flush(); // the run goes first, or the thread would not know the task
    this.thread.postMessage({ type: 'abort', id: job.message.id, reason });
  }

  /** Stop one job by force: taken back if it has not started; its thread terminated if it
   * runs; nothing if it already finished (its result is on its way). */
  kill(job: Job, why: KillReason): void {
    const found = [...this.posted].find(([, p]) => p.job === job);
    if (!found || this.exited) return;
    const [cell, { tag }] = found;
    const at = CELLS + cell;
    if (Atomics.compareExchange(this.shared, at, cellValue(tag, QUEUED), cellValue(tag, WITHDRAWN)) === cellValue(tag, QUEUED)) {
      this.release(cell);
      job.thread = undefined;
      job.settle({ kind: 'killed', why });
      this.onSettled();
      return;
    }
    Atomics.store(this.shared, HOLD, 1);
    if (Atomics.load(this.shared, at) === cellValue(tag, RUNNING)) {
      // The thread is inside this task and will start no other: terminate it.
      this.dying = true;
      job.killedWith ??= why;
      this.handBack(this.withdrawQueued());
      void this.thread.terminate();
    } else {
      Atomics.store(this.shared, HOLD, 0);
      Atomics.notify(this.shared, HOLD);
    }
  }

  /** Terminate the thread; what runs on it settles as killed (shutdown). */
  async stop(): Promise<void> {
    this.dying = true;
    if (!this.exited) await this.thread.terminate();
  }

  private release(cell: number): void {
    this.posted.delete(cell);
    this.freeCells.push(cell);
    if (this.posted.size === 0) this.idleSince = Date.now();
  }

  private onMessage(m: FromThread): void {
    if (m.type !== 'progress' && m.type !== 'done') return;
    const p = this.posted.get(m.cell);
    if (!p || p.tag !== m.tag) return;
    if (m.type === 'progress') return p.job.onProgress(m.progress);
    this.gauge.ended(m.tag, m.ms);
    this.release(m.cell);
    p.job.thread = undefined;
    p.job.settle(m.error ? { kind: 'threw', error: m.error } : { kind: 'returned', result: m.result ?? 'null' });
    this.onSettled();
  }

  private onExit(code: number): void {
    this.exited = true;
    const queued: Job[] = [];
    for (const [cell, p] of this.posted) {
      const v = Atomics.load(this.shared, CELLS + cell);
      this.posted.delete(cell);
      p.job.thread = undefined;
      if (v === cellValue(p.tag, QUEUED)) {
        queued.push(p.job);
      } else {
        // It was running (or had just finished, its result lost with the thread).
        p.job.settle(
          p.job.killedWith
            ? { kind: 'killed', why: p.job.killedWith }
            : this.dying
              ? { kind: 'killed', why: 'shutdown' }
              : { kind: 'crashed', message: this.crashMessage ?? `handler thread exited with code ${code}` },
        );
      }
    }
    if (queued.length > 0) this.handBack(queued);
    this.onSettled();
  }
}
