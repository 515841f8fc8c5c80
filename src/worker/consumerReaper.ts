/**
 * The reaper duty: about once a lease, remove from the consumer groups of this worker's
 * queues the names of workers that hold no message and were not heard from for three
 * leases (reapConsumers, src/broker/reaper.ts). A live worker reads or renews far more
 * often than that, and a dead one's messages have been taken over by then.
 */
import type { RedisClient } from '../redis.js';
import { reapConsumers } from '../broker/reaper.js';
import type { Logger } from '../log.js';
import { Every } from './every.js';

/** How many leases a worker may go unheard before its name is removed. */
const SILENT_LEASES = 3;

export class ConsumerReaper {
  private readonly every: Every;

  constructor(
    private readonly redis: RedisClient,
    private readonly self: string,
    private readonly queues: readonly string[],
    private readonly leaseMs: number,
    private readonly log: Logger,
  ) {
    this.every = new Every(leaseMs, () => this.reap(), log);
  }

  start(): void {
    this.every.start();
  }

  stop(): void {
    this.every.stop();
  }

  private async reap(): Promise<void> {
    for (const queue of this.queues) {
      const removed = await reapConsumers(this.redis, queue, SILENT_LEASES * this.leaseMs, this.self);
      for (const name of removed) {
        this.log.info(`forgot worker ${name} on queue ${queue}: it holds no task and was not heard from for 3 leases`);
      }
    }
  }
}
