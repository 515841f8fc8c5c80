/**
 * One Redis subscriber connection per API process, shared by every watcher: a watcher
 * costs a map entry, not a connection. It hears every task change of every queue (one
 * pattern subscription) and routes each to the watchers of that task. After a reconnect
 * it tells every watcher to re-read its task's event log, which fills any gap.
 */
import type { RedisClient } from '../redis.js';
import { ALL_EVENTS_PATTERN } from '../store/keys.js';
import { pairsToHash, type Hash } from '../store/record.js';

export interface WatchListener {
  change(snapshot: Hash): void;
  /** Changes may have been missed: re-read the log. */
  resync(): void;
}

export class WatchHub {
  /** A task's watchers: one listener as itself (the usual case), several in a set. */
  private readonly byTask = new Map<string, WatchListener | Set<WatchListener>>();
  private readonly everything = new Map<(snapshot: Hash) => void, () => void>();
  private subscribed: Promise<unknown> | undefined;

  constructor(private readonly sub: RedisClient) {
    sub.on('pmessage', (_pattern: string, _channel: string, payload: string) => this.route(payload));
    sub.on('close', () => {
      if (!this.subscribed) return;
      for (const lost of [...this.everything.values()]) lost();
    });
    sub.on('ready', () => {
      if (!this.subscribed) return;
      // ioredis re-subscribes on reconnect; a PING answered after it means the
      // subscription is live again, so a log read from now on misses nothing.
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

  /** Resolves once the subscription is live (watchers read their task after this). */
  ready(): Promise<unknown> {
    this.subscribed ??= this.sub.psubscribe(ALL_EVENTS_PATTERN);
    return this.subscribed;
  }

  /** Routes the task's changes to `listener` until `remove`. */
  add(id: string, listener: WatchListener): void {
    const entry = this.byTask.get(id);
    if (!entry) this.byTask.set(id, listener);
    else if (entry instanceof Set) entry.add(listener);
    else if (entry !== listener) this.byTask.set(id, new Set([entry, listener]));
  }

  remove(id: string, listener: WatchListener): void {
    const entry = this.byTask.get(id);
    if (entry === listener) this.byTask.delete(id);
    else if (entry instanceof Set) {
      entry.delete(listener);
      if (entry.size === 1) this.byTask.set(id, entry.values().next().value!);
    }
  }

  /**
   * Every change of every task to `listener`, until the returned function is called.
   * `lost` hears that the subscription broke: changes published while it was down are not
   * heard again (a per-task watcher re-reads its log; a listener of everything cannot).
   */
  watchAll(listener: (snapshot: Hash) => void, lost: () => void = () => {}): () => void {
    this.everything.set(listener, lost);
    return () => this.everything.delete(listener);
  }

  get watchers(): number {
    let n = this.everything.size;
    for (const entry of this.byTask.values()) n += entry instanceof Set ? entry.size : 1;
    return n;
  }

  private route(payload: string): void {
    let snapshot: Hash;
    try {
      snapshot = pairsToHash(JSON.parse(payload) as string[]);
    } catch {
      return;
    }
    const entry = snapshot.id ? this.byTask.get(snapshot.id) : undefined;
    if (entry instanceof Set) for (const l of entry) l.change(snapshot);
    else entry?.change(snapshot);
    for (const l of this.everything.keys()) l(snapshot);
  }
}
