/**
 * One execution slot: room for one running task. Its task runs on a handler thread
 * (threads.ts chooses which) that runs that task alone while it runs. Killing the slot's
 * task (terminate, hard time limit, shutdown) stops that task by force, even a busy loop,
 * and touches no other task; the slot itself lives on.
 *
 * A task defined with `inline: true` runs on the main thread instead (inline.ts): a kill
 * ends its task at once but cannot stop its handler, and the slot is not free again until
 * that handler has returned (`busyUntil`).
 */
import type { InlineHandlers, InlineRun } from './inline.js';
import type { KillReason, Outcome } from './job.js';
import type { RunMessage } from './protocol.js';
import type { HandlerThreads, Run } from './threads.js';

export type { KillReason, Outcome } from './job.js';

export class Slot {
  private current: { id: string; run: Run } | undefined;
  /** Set when the slot's last task ended while its inline handler still runs: resolves
   * when that handler has returned. */
  busyUntil: Promise<void> | undefined;

  constructor(
    private readonly threads: HandlerThreads,
    private readonly inline?: InlineHandlers,
  ) {}

  async run(message: Omit<RunMessage, 'cell' | 'tag'>, onProgress: (json: string) => void): Promise<Outcome> {
    if (this.current) throw new Error(`slot is busy with task ${this.current.id}`);
    const inline: InlineRun | undefined = this.inline?.has(message.name) ? this.inline.submit(message, onProgress) : undefined;
    const run = inline ?? this.threads.submit(message, onProgress);
    this.current = { id: message.id, run };
    try {
      return await run.outcome;
    } finally {
      this.current = undefined;
      this.busyUntil = inline?.running();
    }
  }

  /** Fire the running handler's AbortSignal. */
  abort(id: string, reason: string): void {
    if (this.current?.id === id) this.current.run.abort(reason);
  }

  /** Stop the slot's task by force; it settles as killed. */
  async kill(why: KillReason): Promise<void> {
    this.current?.run.kill(why);
  }
}
