/**
 * Reading a queue stream through its consumer group, when the queues are empty: the
 * blocking read has a connection of its own; closing disconnects it, so a blocked read
 * cannot hold up shutdown. What is there already, a worker reads without blocking on its
 * command connection (Consumer.readNow), sent with its turn's attempt call.
 *
 * On one Redis a single XREADGROUP waits on every queue. On a Redis Cluster a command may
 * name keys of one slot only, and a blocked command holds its node's connection: the
 * queues are read in groups of one slot each, every group on a connection of its own, all
 * at once. A group's read that answers while no read() waits (another group answered
 * first) is handed to `late`, so no message this worker was given is left unheld.
 */
import calculateSlot from 'cluster-key-slot';
import { Cluster } from 'ioredis';
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

interface SlotGroup {
  connection: RedisClient;
  streams: string[];
  /** The group's read in flight, if any. */
  reading: Promise<void> | undefined;
}

export class Consumer {
  private readonly queueByStream = new Map<string, string>();
  private readonly groups: SlotGroup[];
  /** What a group's read brought that no read() has returned yet. */
  private ready: Delivery[] = [];
  /** A read() waiting: called when a group answers or fails. */
  private wake: (() => void) | undefined;
  private failure: Error | undefined;
  private isClosed = false;
  /** Rejects once closed: a read waiting on a Redis that is gone (its command queued for a
   * reconnect that disconnect() cancels, so never answered) ends with it. */
  private readonly closed: Promise<never>;
  private onClose: (err: Error) => void = () => {};

  constructor(
    blocking: RedisClient,
    private readonly consumer: string,
    queues: readonly string[],
    /** Messages a group's read brought while no read() was waiting (cluster only); `closed`:
     * they came as the consumer closed, to be handed back rather than begun. */
    private readonly late: (deliveries: Delivery[], closed: boolean) => void = () => {},
  ) {
    this.closed = new Promise<never>((_, reject) => (this.onClose = reject));
    this.closed.catch(() => {});
    const streams = queues.map((q) => keys.stream(q));
    for (const [i, q] of queues.entries()) this.queueByStream.set(streams[i]!, q);
    const bySlot = new Map<number, string[]>();
    for (const stream of streams) {
      const slot = blocking instanceof Cluster ? calculateSlot(stream) : 0;
      bySlot.set(slot, [...(bySlot.get(slot) ?? []), stream]);
    }
    this.groups = [...bySlot.values()].map((group, i) => {
      const connection = i === 0 ? blocking : blocking.duplicate();
      connection.on('error', () => {}); // a failed read is reported by read(); ioredis reconnects
      return { connection, streams: group, reading: undefined };
    });
  }

  /** Up to `count` new messages per queue, waiting at most blockMs for the first. */
  async read(count: number, blockMs: number): Promise<Delivery[]> {
    if (this.groups.length === 1) {
      return this.deliveries(await Promise.race([this.xread(this.groups[0]!, count, blockMs), this.closed]));
    }
    for (const group of this.groups) {
      if (!group.reading) group.reading = this.readGroup(group, count, blockMs);
    }
    while (this.ready.length === 0 && !this.failure && this.groups.some((g) => g.reading)) {
      await Promise.race([new Promise<void>((r) => (this.wake = r)), this.closed]);
      this.wake = undefined;
    }
    const failure = this.failure;
    this.failure = undefined;
    const out = this.ready;
    this.ready = [];
    if (out.length === 0 && failure) throw failure;
    return out;
  }

  private xread(group: SlotGroup, count: number, blockMs: number): Promise<StreamReply | null> {
    return group.connection.xreadgroup(
      'GROUP',
      CONSUMER_GROUP,
      this.consumer,
      'COUNT',
      count,
      'BLOCK',
      blockMs,
      'STREAMS',
      ...group.streams,
      ...group.streams.map(() => '>'),
    ) as Promise<StreamReply | null>;
  }

  private readGroup(group: SlotGroup, count: number, blockMs: number): Promise<void> {
    return this.xread(group, count, blockMs).then(
      (reply) => this.answered(group, this.deliveries(reply), undefined),
      (err: Error) => this.answered(group, [], err),
    );
  }

  private answered(group: SlotGroup, deliveries: Delivery[], err: Error | undefined): void {
    group.reading = undefined;
    if (err && !this.isClosed) this.failure = err;
    if (deliveries.length === 0) {
      this.wake?.();
      return;
    }
    if (this.wake) {
      this.ready.push(...deliveries);
      this.wake();
    } else {
      this.late(deliveries, this.isClosed);
    }
  }

  /**
   * Up to `count` new messages of one queue, without waiting, read on `redis` (the worker's
   * command connection, so the read goes out with the attempt call of its turn:
   * AttemptStore.take). The messages are this worker's to claim.
   */
  async readNow(redis: RedisClient, queue: string, count: number): Promise<Delivery[]> {
    const reply = (await redis.xreadgroup(
      'GROUP',
      CONSUMER_GROUP,
      this.consumer,
      'COUNT',
      count,
      'STREAMS',
      keys.stream(queue),
      '>',
    )) as StreamReply | null;
    return reply ? toDeliveries(queue, reply[0]?.[1] ?? []) : [];
  }

  private deliveries(reply: StreamReply | null): Delivery[] {
    if (!reply) return [];
    return reply.flatMap(([stream, entries]) => toDeliveries(this.queueByStream.get(stream)!, entries));
  }

  close(): void {
    this.isClosed = true;
    this.onClose(new Error('the consumer is closed'));
    for (const group of this.groups) group.connection.disconnect();
  }
}
