/**
 * Crash recovery: take over messages whose worker stopped renewing their lease (it died,
 * or lost Redis for longer than a lease). The claim script then runs them as a new
 * attempt, or fails them with WorkerLostError when their attempts are spent.
 *
 * Each look searches the queue's whole pending list (`XPENDING … IDLE`, filtered inside
 * Redis), so an abandoned message is found on the first look after its lease ran out,
 * however many live messages come before it. `XCLAIM` with the same minimum idle time
 * then takes only those still abandoned: a message renewed or taken meanwhile is left.
 */
import type { RedisClient } from '../redis.js';
import type { Delivery } from '../store/attemptStore.js';
import { CONSUMER_GROUP, keys } from '../store/keys.js';
import { toDeliveries } from './consumer.js';

export class Reclaimer {
  constructor(
    private readonly redis: RedisClient,
    private readonly consumer: string,
    private readonly leaseMs: number,
  ) {}

  /** Up to `count` abandoned messages of one queue, now owned by this worker. */
  async reclaim(queue: string, count: number): Promise<Delivery[]> {
    const stream = keys.stream(queue);
    const idle = (await this.redis.xpending(stream, CONSUMER_GROUP, 'IDLE', this.leaseMs, '-', '+', count)) as [string, string, number, number][];
    if (idle.length === 0) return [];
    const entries = (await this.redis.xclaim(stream, CONSUMER_GROUP, this.consumer, this.leaseMs, ...idle.map(([msgId]) => msgId))) as [
      string,
      string[] | null,
    ][];
    return toDeliveries(queue, entries);
  }
}
