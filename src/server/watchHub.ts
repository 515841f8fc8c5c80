/**
 * One Redis subscriber connection per API process, shared by every watcher: a watcher
 * costs a map entry, not a connection. It hears every task change of every queue (one
 * pattern subscription) and routes each to the watchers of that task. After a reconnect
 * it tells every watcher to re-read its task's event log, which fills any gap.
 */
import type { Redis } from 'ioredis';
import { ALL_EVENTS_PATTERN } from '../store/keys.js';
import { pairsToHash, type Hash } from '../store/record.js';

export interface WatchListener {
  change(snapshot: Hash): void;
  /** Changes may have been missed: re-read the log. */
  resync(): void;
}

export class WatchHub {
  private readonly byTask = new Map<string, Set<WatchListener>>();
  private readonly everything = new Set<(snapshot: Hash) => void>();
  private subscribed: Promise<unknown> | undefined;

  constructor(private readonly sub: Redis) {
    sub.on('pmessage', (_pattern: string, _channel: string, payload: string) => this.route(payload));
    sub.on('ready', () => {
      if (!this.subscribed) return;
      // ioredis re-subscribes on reconnect; a PING answered after it means the
      // subscription is live again, so a log read from now on misses nothing.
      void this.sub
        .ping()
        .then(() => {
          for (const set of this.byTask.values()) for (const l of set) l.resync();
        })
        .catch(() => {});
    });
  }

  /** Resolves once the subscription is live (watchers read their task after this). */
  ready(): Promise<unknown> {
    this.subscribed ??= this.sub.psubscribe(ALL_EVENTS_PATTERN);
    return this.subscribed;
  }

  watch(id: string, listener: WatchListener): () => void {
    let set = this.byTask.get(id);
    if (!set) this.byTask.set(id, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.byTask.delete(id);
    };
  }

  watchAll(listener: (snapshot: Hash) => void): () => void {
    this.everything.add(listener);
    return () => this.everything.delete(listener);
  }

  get watchers(): number {
    let n = this.everything.size;
    for (const set of this.byTask.values()) n += set.size;
    return n;
  }

  private route(payload: string): void {
    let snapshot: Hash;
    try {
      snapshot = pairsToHash(JSON.parse(payload) as string[]);
    } catch {
      return;
    }
    const set = snapshot.id ? this.byTask.get(snapshot.id) : undefined;
    if (set) for (const l of set) l.change(snapshot);
    for (const l of this.everything) l(snapshot);
  }
}
