/**
 * The promoter duty: moves the tasks whose countdown or retry backoff ran out from each
 * queue's scheduled set onto its stream (promoteDue, src/broker/scheduler.ts). It sleeps
 * until the next due time the promote script reports, and no longer than `everyMs` (another
 * worker may have promoted, a countdown's announcement may have been missed). Countdowns
 * announce themselves on the control channel (canceller.ts) and this worker's retries are
 * known here: both call promoteAt, which wakes it sooner.
 */
import type { RedisClient } from '../redis.js';
import { promoteDue } from '../broker/scheduler.js';
import type { Logger } from '../log.js';

export class Promoter {
  private timer: NodeJS.Timeout | undefined;
  /** When the timer fires (ms). */
  private due = 0;
  private running = false;

  constructor(
    private readonly redis: RedisClient,
    private readonly queues: readonly string[],
    private readonly everyMs: number,
    private readonly log: Logger,
  ) {}

  /** Promote what is due now, then keep promoting until stop(). */
  start(): void {
    this.running = true;
    this.promoteAt(Date.now());
  }

  stop(): void {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Promote at `due` (ms), or sooner if already planned. */
  promoteAt(due: number): void {
    if (!this.running || (this.timer && this.due <= due)) return;
    clearTimeout(this.timer);
    this.due = due;
    this.timer = setTimeout(() => void this.promote(), Math.max(0, due - Date.now()));
  }

  private async promote(): Promise<void> {
    this.timer = undefined;
    let next = Date.now() + this.everyMs;
    try {
      for (const queue of this.queues) {
        const due = await promoteDue(this.redis, queue);
        if (due !== undefined) next = Math.min(next, due);
      }
    } catch (err) {
      this.log.warn(`promoting scheduled tasks failed: ${(err as Error).message}`);
    }
    this.promoteAt(next);
  }
}
