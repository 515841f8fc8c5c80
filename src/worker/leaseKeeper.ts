/**
 * The lease keeper duty: every quarter lease, renew the leases of every message this
 * worker holds (the tasks it runs and the messages waiting here for a slot, renewLeases in
 * src/broker/lease.ts), so no other worker takes them over while this one lives. The same
 * round trip reads the tasks' cancel flags: a cancel request whose push was missed is
 * applied on the next renewal.
 *
 * It goes on while a stop waits for running tasks (they are still this worker's, and a
 * grace period longer than the lease must not let another worker take them), and ends
 * once they are done.
 */
import type { RedisClient } from '../redis.js';
import { renewLeases } from '../broker/lease.js';
import type { Logger } from '../log.js';
import type { Delivery } from '../store/attemptStore.js';
import type { CancelMode } from './canceller.js';
import { Every } from './every.js';

/** How often leases are renewed and abandoned tasks looked for, and the longest the
 * promoter sleeps: a quarter lease, with a floor for very short leases. */
export function leaseTick(leaseMs: number): number {
  return Math.max(200, Math.floor(leaseMs / 4));
}

export class LeaseKeeper {
  private readonly every: Every;

  constructor(
    private readonly redis: RedisClient,
    private readonly self: string,
    leaseMs: number,
    private readonly held: () => Delivery[],
    private readonly onCancel: (id: string, mode: CancelMode) => void,
    log: Logger,
  ) {
    this.every = new Every(leaseTick(leaseMs), () => this.renew(), log);
  }

  start(): void {
    this.every.start();
  }

  stop(): void {
    this.every.stop();
  }

  private async renew(): Promise<void> {
    const cancels = await renewLeases(this.redis, this.self, this.held());
    for (const [id, mode] of cancels) this.onCancel(id, mode);
  }
}
