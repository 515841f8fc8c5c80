/**
 * One Redis subscriber connection per API process, shared by every watcher: a watcher
 * costs a map entry, not a connection. It subscribes (sharded pub/sub, SSUBSCRIBE) only to
 * the change channels its open watches need, one per queue: the first watch of a queue
 * subscribes to the queue's channel, the last one to close unsubscribes, so an API server
 * nobody watches through hears nothing and a Redis Cluster delivers each change only to
 * the servers that watch its queue. Each change is routed to the watchers of its task and
 * to the feeds (WatchEvents) of its queue. After a reconnect it tells every watcher to
 * re-read its task's event log, which fills any gap.
 */
import type { RedisClient } from '../redis.js';
import { channels } from '../store/keys.js';
import { knownQueues } from '../store/queueRegistry.js';
import { pairsToHash, type Hash } from '../store/record.js';

export interface WatchListener {
  change(snapshot: Hash): void;
  /** Changes may have been missed: re-read the log. */
  resync(): void;
}

/** A listener of every change of one queue, or of every queue. */
export interface FeedListener {
  change(snapshot: Hash): void;
  /** The subscription broke: changes published while it was down are not heard again. */
  lost(): void;
  /** A feed of every queue now hears `queue` too, a queue added after the feed opened, once
   * `live` resolves: whatever changed there before was not heard (read it then). Told before
   * the subscription is live, so that a change heard first can be held for that read. */
  added?(queue: string, live: Promise<void>): void;
}

/** A subscribed channel: how many watches hold it, and when the subscription is live. */
interface Held {
  holders: number;
  live: Promise<void>;
  failed: boolean;
}

export class WatchHub {
  /** A task's watchers: one listener as itself (the usual case), several in a set. */
  private readonly byTask = new Map<string, WatchListener | Set<WatchListener>>();
  /** Feeds of one queue, by the queue's change channel. */
  private readonly feeds = new Map<string, Set<FeedListener>>();
  /** Feeds of every queue. */
  private readonly everywhere = new Set<FeedListener>();
  /** The queues held for the feeds of every queue (one hold each, while any is open), and
   * when they are all live. */
  private everyQueue: { queues: Set<string>; live: Promise<void> } | undefined;
  private readonly held = new Map<string, Held>();

  constructor(
    private readonly sub: RedisClient,
    /** For reading the set of queues (the subscriber connection takes no other command). */
    private readonly redis: RedisClient,
  ) {
    sub.on('smessage', (channel: string, payload: string) => this.route(channel, payload));
    sub.on('close', () => {
      for (const feed of [...this.everywhere, ...[...this.feeds.values()].flatMap((s) => [...s])]) feed.lost();
    });
    // On a Redis Cluster a slot that moves (a migration, a failover) takes its shard channels
    // with it: the old owner drops their subscribers, and ioredis subscribes again at the new
    // owner once it has the new slot map. What was published in between was not heard.
    sub.on('subscribersReady', () => this.resubscribed());
    sub.on('ready', () => {
      if (this.byTask.size === 0) return;
      // ioredis re-subscribes on reconnect; a PING answered after it means the
      // subscriptions are live again, so a log read from now on misses nothing.
      void this.sub
        .ping()
        .then(() => {
          for (const entry of this.byTask.values()) {
            if (entry instanceof Set) for (const l of entry) l.resync();
            else entry.resync();
          }
        })
        .catch(() => {});
    });
  }

  /**
   * Routes the changes of task `id` (of `queue`, the queue its keys live in) to `listener`
   * until `remove`. Resolves once the queue's subscription is live: the watcher reads its
   * task after this, so no change falls between the read and the subscription.
   */
  add(id: string, queue: string, listener: WatchListener): Promise<void> {
    const entry = this.byTask.get(id);
    if (!entry) this.byTask.set(id, listener);
    else if (entry instanceof Set) entry.add(listener);
    else if (entry !== listener) this.byTask.set(id, new Set([entry, listener]));
    return this.hold(channels.events(queue));
  }

  /** Undoes one `add` (call it once per `add`). */
  remove(id: string, queue: string, listener: WatchListener): void {
    const entry = this.byTask.get(id);
    if (entry === listener) this.byTask.delete(id);
    else if (entry instanceof Set) {
      entry.delete(listener);
      if (entry.size === 1) this.byTask.set(id, entry.values().next().value!);
    }
    this.release(channels.events(queue));
  }

  /**
   * Every change of the tasks of `queues` (of every queue's, when undefined) to `listener`, until
   * `off` is called. `live` resolves once the subscriptions are live; changes made before
   * are not heard. A feed of every queue subscribes to each queue in the set of queues,
   * read after subscribing to the announcements of new queues, so that a queue added
   * later is heard from then on (`listener.added`).
   */
  feed(queues: readonly string[] | undefined, listener: FeedListener): { live: Promise<void>; off: () => void } {
    if (queues === undefined) {
      this.everywhere.add(listener);
      const live = this.holdEveryQueue();
      let on = true;
      return {
        live,
        off: () => {
          if (!on) return;
          on = false;
          this.everywhere.delete(listener);
          if (this.everywhere.size === 0) this.releaseEveryQueue();
        },
      };
    }
    // One channel per queue the feed names: the partitions of a partitioned queue each have theirs.
    const held = queues.map((queue) => {
      const channel = channels.events(queue);
      let set = this.feeds.get(channel);
      if (!set) this.feeds.set(channel, (set = new Set()));
      set.add(listener);
      return { channel, set, live: this.hold(channel) };
    });
    let on = true;
    return {
      live: Promise.all(held.map((h) => h.live)).then(() => undefined),
      off: () => {
        if (!on) return;
        on = false;
        for (const { channel, set } of held) {
          set.delete(listener);
          if (set.size === 0 && this.feeds.get(channel) === set) this.feeds.delete(channel);
          this.release(channel);
        }
      },
    };
  }

  /** WatchStatus and WatchEvents streams listening here. */
  get watchers(): number {
    let n = this.everywhere.size;
    for (const set of this.feeds.values()) n += set.size;
    for (const entry of this.byTask.values()) n += entry instanceof Set ? entry.size : 1;
    return n;
  }

  /** The channels this hub is subscribed to (or subscribing), for tests and diagnostics. */
  get channels(): string[] {
    return [...this.held.keys()];
  }

  /**
   * The subscriptions were moved to other nodes: each held channel is subscribed again (live
   * once answered; a channel subscribed already is left as it is), then every watcher
   * re-reads its task's log, and every feed, which has no log to re-read, is told it may
   * have missed changes.
   */
  private resubscribed(): void {
    const held = [...this.held.keys()];
    if (held.length === 0) return;
    for (const feed of [...this.everywhere, ...[...this.feeds.values()].flatMap((s) => [...s])]) feed.lost();
    void Promise.all(held.map((channel) => this.sub.ssubscribe(channel)))
      .then(() => {
        for (const entry of this.byTask.values()) {
          if (entry instanceof Set) for (const l of entry) l.resync();
          else entry.resync();
        }
      })
      .catch(() => {});
  }

  /** Subscribe to `channel` unless held already; resolves once the subscription is live. */
  private hold(channel: string): Promise<void> {
    const held = this.held.get(channel);
    if (held) {
      held.holders++;
      if (held.failed) held.live = this.subscribe(channel, held);
      return held.live;
    }
    const fresh: Held = { holders: 1, live: Promise.resolve(), failed: false };
    this.held.set(channel, fresh);
    fresh.live = this.subscribe(channel, fresh);
    return fresh.live;
  }

  private subscribe(channel: string, held: Held): Promise<void> {
    held.failed = false;
    // One channel per call: on a Redis Cluster, the channels of one call must share a slot.
    const live = this.sub.ssubscribe(channel).then(() => undefined);
    live.catch(() => {
      held.failed = true;
    });
    return live;
  }

  /** Undo one `hold`; the last one unsubscribes. Commands on one connection keep their
   * order, so a hold right after still ends subscribed. */
  private release(channel: string): void {
    const held = this.held.get(channel);
    if (!held || --held.holders > 0) return;
    this.held.delete(channel);
    // The channel is named: an unsubscribe without channels would drop every subscription.
    this.sub.sunsubscribe(channel).catch(() => {});
  }

  private holdEveryQueue(): Promise<void> {
    if (this.everyQueue) return this.everyQueue.live;
    const queues = new Set<string>();
    const live = (async () => {
      await this.hold(channels.queueAdded());
      const found = await knownQueues(this.redis);
      await Promise.all(found.map((q) => this.holdForEveryQueue(queues, q)));
    })();
    live.catch(() => {});
    this.everyQueue = { queues, live };
    return live;
  }

  private holdForEveryQueue(queues: Set<string>, queue: string): Promise<void> | undefined {
    if (queues.has(queue)) return undefined;
    queues.add(queue);
    return this.hold(channels.events(queue));
  }

  private releaseEveryQueue(): void {
    const every = this.everyQueue;
    if (!every) return;
    this.everyQueue = undefined;
    this.release(channels.queueAdded());
    for (const q of every.queues) this.release(channels.events(q));
  }

  /** A queue was announced: the feeds of every queue subscribe to it, then hear of it. */
  private queueAdded(queue: string): void {
    const every = this.everyQueue;
    if (!every) return;
    const live = this.holdForEveryQueue(every.queues, queue);
    if (!live) return;
    for (const feed of [...this.everywhere]) feed.added?.(queue, live);
    live.catch(() => {
      // Not subscribed: the feeds cannot promise to hear the queue.
      for (const feed of [...this.everywhere]) feed.lost();
    });
  }

  private route(channel: string, payload: string): void {
    if (channel === channels.queueAdded()) return this.queueAdded(payload);
    let snapshot: Hash;
    try {
      snapshot = pairsToHash(JSON.parse(payload) as string[]);
    } catch {
      return;
    }
    const entry = snapshot.id ? this.byTask.get(snapshot.id) : undefined;
    if (entry instanceof Set) for (const l of entry) l.change(snapshot);
    else entry?.change(snapshot);
    const feeds = this.feeds.get(channel);
    if (feeds) for (const f of feeds) f.change(snapshot);
    for (const f of this.everywhere) f.change(snapshot);
  }
}
