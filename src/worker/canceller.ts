/**
 * The canceller duty: hears the control channel of each queue and stops the tasks a cancel
 * request names. `<id>\n<abort|terminate>` asks to cancel a task: `abort` fires its
 * handler's AbortSignal, `terminate` stops it by force (and wins over an abort asked
 * before). `due\n<ms>` announces a countdown, so the promoter wakes when it is due instead
 * of polling. A missed request is caught by the lease keeper, which reads the same flag
 * from the record on every renewal.
 *
 * A request for a task whose claim is still in flight here is kept for a few seconds and
 * applied once the task runs (began), rather than a quarter lease later.
 */
import type { RedisClient } from '../redis.js';
import type { Logger } from '../log.js';
import { channels } from '../store/keys.js';
import type { Slot } from './slot.js';

export type CancelMode = 'abort' | 'terminate';

/** How long a request for a task not running here is kept. */
const EARLY_CANCEL_MS = 5000;

/** A task running here, as the canceller sees it: the mode asked so far, and its slot. */
export interface Cancellable {
  cancel?: CancelMode;
  slot: Pick<Slot, 'abort' | 'kill'>;
}

export class Canceller {
  /** Requests heard for tasks not (yet) running here, by id. */
  private readonly early = new Map<string, { mode: CancelMode; at: number }>();

  constructor(
    private readonly sub: RedisClient,
    private readonly queues: readonly string[],
    private readonly find: (id: string) => Cancellable | undefined,
    private readonly onScheduled: (dueMs: number) => void,
    private readonly log: Logger,
  ) {}

  /** Subscribe to the queues' control channels; resolves once subscribed. Sharded pub/sub:
   * each channel lives in its queue's hash slot, so on a Redis Cluster it is heard from the
   * shard that owns the queue, one channel per call (a call may not span slots). */
  async start(): Promise<void> {
    this.sub.on('smessage', (_channel: string, payload: string) => {
      const nl = payload.indexOf('\n');
      if (nl < 0) return;
      const head = payload.slice(0, nl);
      const rest = payload.slice(nl + 1);
      if (head === 'due') {
        const due = Number(rest);
        if (Number.isFinite(due)) this.onScheduled(due);
      } else if (rest === 'abort' || rest === 'terminate') this.apply(head, rest);
    });
    await Promise.all(this.queues.map((q) => this.sub.ssubscribe(channels.control(q))));
  }

  /** Close the subscription. */
  async stop(): Promise<void> {
    await this.sub.quit();
  }

  /** Cancel task `id` if it runs here, or keep the request a few seconds in case it is about to. */
  apply(id: string, mode: CancelMode): void {
    const run = this.find(id);
    if (!run) {
      const now = Date.now();
      for (const [k, v] of this.early) if (now - v.at > EARLY_CANCEL_MS) this.early.delete(k);
      const prev = this.early.get(id)?.mode;
      this.early.set(id, { mode: prev === 'terminate' ? prev : mode, at: now });
      return;
    }
    if (run.cancel === 'terminate' || run.cancel === mode) return;
    run.cancel = mode;
    if (mode === 'terminate') {
      this.log.info(`task ${id}: terminating on request`);
      void run.slot.kill('terminate');
    } else {
      run.slot.abort(id, 'the task was cancelled');
    }
  }

  /** Task `id` runs now: apply a request heard while its claim was in flight. */
  began(id: string): void {
    const early = this.early.get(id);
    if (!early) return;
    this.early.delete(id);
    this.apply(id, early.mode);
  }
}
