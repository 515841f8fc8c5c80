/**
 * Whether any worker has ever read a queue: its stream has the workers' consumer group,
 * which a worker creates when it starts on the queue. A task started on a queue no worker
 * reads waits forever, most often because of a misspelt queue name, so Start says so.
 * A queue found read is remembered for good; one found unread is looked at again after a
 * few seconds, so the check costs a Redis call only while nobody reads the queue.
 */
import type { RedisClient } from '../redis.js';
import type { QueuePartitions } from '../ids.js';
import { CONSUMER_GROUP, keys } from './keys.js';

const RECHECK_MS = 5_000;

export class QueueReaders {
  private readonly read = new Set<string>();
  private readonly unreadUntil = new Map<string, number>();

  /** `onUnread` hears of a queue found unread, at most once per look (every few seconds). */
  constructor(
    private readonly redis: RedisClient,
    private readonly onUnread?: (queue: string) => void,
    private readonly partitions?: QueuePartitions,
  ) {}

  /** False only when the queue's stream (its first partition's, as workers read them all)
   * has no consumer group of the workers. */
  async hasReader(queue: string): Promise<boolean> {
    if (this.read.has(queue)) return true;
    const until = this.unreadUntil.get(queue);
    if (until !== undefined && Date.now() < until) return false;
    const groups = (await this.redis.xinfo('GROUPS', keys.stream(this.partitions?.of(queue)[0] ?? queue)).catch(() => [])) as unknown[][];
    const found = groups.some((g) => g[1] === CONSUMER_GROUP);
    if (found) {
      this.read.add(queue);
      this.unreadUntil.delete(queue);
    } else {
      this.unreadUntil.set(queue, Date.now() + RECHECK_MS);
      this.onUnread?.(queue);
    }
    return found;
  }
}

/** What Start tells a caller whose task went to a queue no worker has read. */
export function unreadQueueHint(queue: string): string {
  return `no worker has read queue "${queue}" yet, so the task waits until one does: start one with \`taskwire worker --queues ${queue}\` (or check the queue's name)`;
}
