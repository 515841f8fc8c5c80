/**
 * One execution slot: room for one running task. For each task it borrows a handler thread
 * (threads.ts) that runs that task alone, and gives it back when the task settles. Killing
 * the slot's task (terminate, hard time limit, shutdown) terminates that thread, which
 * stops even a busy loop at once and touches no other task; the slot itself lives on.
 */
import type { HandlerThread, KillReason, Outcome } from './handlerThread.js';
import type { RunMessage } from './protocol.js';
import type { HandlerThreads } from './threads.js';

export type { KillReason, Outcome } from './handlerThread.js';

interface Current {
  id: string;
  thread?: HandlerThread;
  cancelWait?: () => void;
  killed?: KillReason;
  abort?: string;
}

export class Slot {
  private current: Current | undefined;

  constructor(private readonly threads: HandlerThreads) {}

  get busy(): boolean {
    return this.current !== undefined;
  }

  get taskId(): string | undefined {
    return this.current?.id;
  }

  async run(message: RunMessage, onProgress: (json: string) => void): Promise<Outcome> {
    if (this.current) throw new Error(`slot is busy with task ${this.current.id}`);
    const cur: Current = { id: message.id };
    this.current = cur;
    try {
      const borrow = this.threads.borrow();
      cur.cancelWait = borrow.cancel;
      const lent = await borrow.thread;
      cur.cancelWait = undefined;
      if (lent instanceof Error) return { kind: 'crashed', message: `no handler thread could be started: ${lent.message}` };
      if (!lent) return { kind: 'killed', why: cur.killed ?? 'shutdown' };
      cur.thread = lent;
      if (cur.killed) {
        // Killed in the instant between getting the thread and starting: do not start.
        await lent.kill(cur.killed);
        return { kind: 'killed', why: cur.killed };
      }
      const outcome = lent.run(message, onProgress);
      if (cur.abort !== undefined) lent.abort(message.id, cur.abort);
      return await outcome;
    } finally {
      if (cur.thread) this.threads.giveBack(cur.thread);
      this.current = undefined;
    }
  }

  /** Fire the running handler's AbortSignal (at once, or as it starts). */
  abort(id: string, reason: string): void {
    const cur = this.current;
    if (cur?.id !== id) return;
    if (cur.thread) cur.thread.abort(id, reason);
    else cur.abort = reason;
  }

  /** Stop the slot's task by force (its thread is terminated); it settles as killed. */
  async kill(why: KillReason): Promise<void> {
    const cur = this.current;
    if (!cur) return;
    cur.killed ??= why;
    if (cur.thread) await cur.thread.kill(why);
    else cur.cancelWait?.();
  }
}
