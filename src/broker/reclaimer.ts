/**
 * Crash recovery: take over messages whose worker stopped renewing their lease (it died,
 * or lost Redis for longer than a lease). The claim script then runs them as a new
 * attempt, or fails them with WorkerLostError when their attempts are spent.
 */
import type { Redis } from 'ioredis';
import type { Delivery } from '../store/attemptStore.js';
import { CONSUMER_GROUP, keys } from '../store/keys.js';
import { toDeliveries } from './consumer.js';

export class Reclaimer {
  private readonly cursors = new Map<string, string>();

  constructor(
    private readonly redis: Redis,
    private readonly consumer: string,
    private readonly leaseMs: number,
  ) {}

  /** Up to `count` abandoned messages of one queue, now owned by this worker. */
  async reclaim(queue: string, count: number): Promise<Delivery[]> {
    const cursor = this.cursors.get(queue) ?? '0-0';
    const [next, entries] = (await this.redis.xautoclaim(
      keys.stream(queue),
      CONSUMER_GROUP,
      this.consumer,
      this.leaseMs,
      cursor,
      'COUNT',
      count,
    )) as [string, [string, string[] | null][]];
    this.cursors.set(queue, next);
    return toDeliveries(queue, entries);
  }
}
