/**
 * Reading a queue stream through its consumer group, when the queues are empty: the
 * blocking read has a connection of its own; closing disconnects it, so a blocked read
 * cannot hold up shutdown. (What is there already, a worker reads and begins in one script
 * call: AttemptStore.take.)
 */
import type { RedisClient } from '../redis.js';
import type { Delivery } from '../store/attemptStore.js';
import { CONSUMER_GROUP, keys } from '../store/keys.js';

type StreamReply = [stream: string, entries: [msgId: string, fields: string[] | null][]][];

export function toDeliveries(queue: string, entries: [string, string[] | null][]): Delivery[] {
  const out: Delivery[] = [];
  for (const [msgId, fields] of entries) {
    if (!fields) continue; // deleted while pending
    let id = '';
    let ekey = '';
    for (let i = 0; i + 1 < fields.length; i += 2) {
      if (fields[i] === 'id') id = fields[i + 1]!;
      else if (fields[i] === 'k') ekey = fields[i + 1]!;
    }
    if (id) out.push({ queue, msgId, id, ekey });
  }
  return out;
}

/** Create each queue's stream and consumer group if missing (from the start of the stream,
 * so tasks sent before any worker existed are delivered). */
export async function ensureGroups(redis: RedisClient, queues: readonly string[]): Promise<void> {
  await Promise.all(
    queues.map((q) =>
      redis.xgroup('CREATE', keys.stream(q), CONSUMER_GROUP, '0', 'MKSTREAM').catch((err: Error) => {
        if (!err.message.includes('BUSYGROUP')) throw err;
      }),
    ),
  );
}

export class Consumer {
  private readonly streams: string[];
  private readonly queueByStream = new Map<string, string>();
  /** Rejects once closed: a read waiting on a Redis that is gone (its command queued for a
   * reconnect that disconnect() cancels, so never answered) ends with it. */
  private readonly closed: Promise<never>;
  private onClose: (err: Error) => void = () => {};

  constructor(
    private readonly blocking: RedisClient,
    private readonly consumer: string,
    queues: readonly string[],
  ) {
    this.closed = new Promise<never>((_, reject) => (this.onClose = reject));
    this.closed.catch(() => {});
    this.streams = queues.map((q) => keys.stream(q));
    for (const [i, q] of queues.entries()) this.queueByStream.set(this.streams[i]!, q);
  }

  /** Up to `count` new messages per queue, waiting at most blockMs for the first. */
  async read(count: number, blockMs: number): Promise<Delivery[]> {
    const reply = this.blocking.xreadgroup(
      'GROUP',
      CONSUMER_GROUP,
      this.consumer,
      'COUNT',
      count,
      'BLOCK',
      blockMs,
      'STREAMS',
      ...this.streams,
      ...this.streams.map(() => '>'),
    ) as Promise<StreamReply | null>;
    return this.deliveries(await Promise.race([reply, this.closed]));
  }

  private deliveries(reply: StreamReply | null): Delivery[] {
    if (!reply) return [];
    return reply.flatMap(([stream, entries]) => toDeliveries(this.queueByStream.get(stream)!, entries));
  }

  close(): void {
    this.onClose(new Error('the consumer is closed'));
    this.blocking.disconnect();
  }
}
