/**
 * The ticker every `taskwire serve`, `worker` and `dev` process runs: it wakes when the
 * earliest schedule is due (and at least every second, to see new ones), and fires each
 * due schedule through fire-10.lua. Any number of tickers may race for one tick: the script
 * lets one start the run and tells the others 'stale', so there is no leader to elect and
 * no lock to hold, and a ticker killed at any moment loses nothing.
 */
import type { Logger } from '../log.js';
import type { ScheduleStore } from './scheduleStore.js';

export const POLL_MS = 1000;
/** Due schedules read at a time. */
const BATCH = 100;
/** How soon to look again at a tick that is not due yet by Redis's clock (this machine's
 * clock runs ahead of it). */
const EARLY_RETRY_MS = 50;

export class Ticker {
  private stopped = false;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  /** Schedules this process cannot start (say, a task its registry lacks), warned once. */
  private readonly cannot = new Set<string>();
  private redisDown = false;
  /** A tick of this pass was early by Redis's clock. */
  private early = false;

  constructor(
    private readonly store: ScheduleStore,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.loop ??= this.run();
  }

  /** Stop; resolves when a pass in progress has ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let waitMs = POLL_MS;
      try {
        waitMs = await this.pass();
        if (this.redisDown) this.log.info('schedules: Redis is back; ticking again');
        this.redisDown = false;
      } catch (err) {
        if (!this.redisDown) this.log.warn(`schedules: cannot read them (${(err as Error).message}); retrying every second`);
        this.redisDown = true;
      }
      if (this.stopped) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, waitMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  /** Fire what is due; returns how long to sleep. */
  private async pass(): Promise<number> {
    this.early = false;
    const queues = await this.store.queues();
    for (const queue of queues) {
      for (;;) {
        const due = await this.store.due(queue, Date.now(), BATCH);
        let moved = 0;
        for (const { id } of due) {
          if (this.stopped) return 0;
          if (await this.fireOne(queue, id)) moved++;
        }
        // A full batch that all moved on: more may be due behind it.
        if (due.length < BATCH || moved < due.length) break;
      }
    }
    const earliest = await this.store.earliest(queues);
    const wait = earliest === undefined ? POLL_MS : earliest - Date.now();
    if (this.early) return EARLY_RETRY_MS;
    // Still due after the pass: what this process cannot fire; another may.
    return wait <= 0 ? POLL_MS : Math.min(wait, POLL_MS);
  }

  /** Fire one due schedule; whether its tick was dealt with (by this process or another). */
  private async fireOne(queue: string, id: string): Promise<boolean> {
    try {
      const outcome = await this.store.fire(queue, id);
      if (outcome === 'created' || outcome === 'skipped')
        this.log.debug(`schedule ${id}: ${outcome === 'created' ? 'run started' : 'tick skipped, the last run has not finished'}`, {
          schedule_id: id,
          queue,
        });
      this.cannot.delete(id);
      if (outcome === 'early') this.early = true;
      return outcome !== 'early';
    } catch (err) {
      if ((err as { kind?: string }).kind === undefined) throw err;
      if (!this.cannot.has(id)) {
        this.cannot.add(id);
        this.log.warn(`schedule ${id}: this process cannot start its run: ${(err as Error).message}`, { schedule_id: id, queue });
      }
      return false;
    }
  }
}
