/**
 * The reclaimer duty: every quarter lease, take over the messages of this worker's queues
 * whose worker stopped renewing their lease (it died, or lost Redis for longer than a
 * lease; Reclaimer in src/broker/reclaimer.ts), as many as there are free slots, and run
 * them here as a new attempt.
 *
 * A look that found every slot busy, or found tasks (a dead worker may have held more),
 * asks for the next free slot: the fetch loop then looks again before it takes new work,
 * until a look finds none, so a dead worker's tasks do not wait behind the whole queue.
 */
import type { RedisClient } from '../redis.js';
import { Reclaimer } from '../broker/reclaimer.js';
import type { Logger } from '../log.js';
import type { Delivery } from '../store/attemptStore.js';
import { Every } from './every.js';
import { leaseTick } from './leaseKeeper.js';

/** What the recoverer hands its messages to: the free slots, and a way in for a message not yet begun. */
export interface Slots {
  readonly free: number;
  deliver(d: Delivery): void;
}

export class Recoverer {
  private readonly reclaimer: Reclaimer;
  private readonly every: Every;
  private looking: Promise<void> | undefined;
  private wantsNextSlot = false;

  constructor(
    redis: RedisClient,
    self: string,
    private readonly queues: readonly string[],
    leaseMs: number,
    private readonly slots: Slots,
    private readonly log: Logger,
  ) {
    this.reclaimer = new Reclaimer(redis, self, leaseMs);
    this.every = new Every(leaseTick(leaseMs), () => this.look(), log);
  }

  start(): void {
    this.every.start();
  }

  stop(): void {
    this.every.stop();
  }

  /** A look the last one asked for, to run before the next free slot takes new work; undefined when none is wanted. */
  lookFirst(): Promise<void> | undefined {
    if (!this.wantsNextSlot) return undefined;
    this.wantsNextSlot = false;
    return this.look();
  }

  /** Look now, unless a look is in flight (then it waits for that one). */
  private look(): Promise<void> {
    this.looking ??= this.reclaimFree().finally(() => (this.looking = undefined));
    return this.looking;
  }

  private async reclaimFree(): Promise<void> {
    for (const queue of this.queues) {
      const free = this.slots.free;
      if (free <= 0) {
        this.wantsNextSlot = true;
        return;
      }
      const taken = await this.reclaimer.reclaim(queue, free);
      for (const d of taken) {
        this.log.info(`task ${d.id}: taken over from a worker that stopped renewing its lease`);
        this.slots.deliver(d);
      }
      if (taken.length > 0) this.wantsNextSlot = true;
    }
  }
}
