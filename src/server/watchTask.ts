/**
 * The watch invariant: a watcher sees every version after the one it starts from exactly
 * once, in order, whatever the timing. Subscribe first, then read the record and the log,
 * then forward live changes newer than the last one sent; any gap (a skipped version, a
 * reconnect) is filled from the task's event log, which is the truth.
 *
 * A watcher is held for as long as its stream is open, by the thousand on one server, so
 * it is one plain object — the stream's iterator, its hub listener and its abort listener —
 * that keeps the last version sent and the task's args and kwargs, nothing else. It is not
 * an async generator on purpose: a suspended generator keeps every register of its frame,
 * so each watcher would hold the whole record it read first and the last change it saw.
 */
import { ConnectError } from '@connectrpc/connect';
import { parseRecord, type Hash, type TaskRecord } from '../store/record.js';
import { isTerminal } from '../store/states.js';
import type { TaskRef, TaskStore } from '../store/taskStore.js';
import { Mailbox, type Next } from './mailbox.js';
import type { WatchHub, WatchListener } from './watchHub.js';

export type WatchItem = { task: TaskRecord } | { heartbeat: true };

/** What every watch of one service shares. */
export interface WatchDeps<Out> {
  store: TaskStore;
  hub: WatchHub;
  heartbeatMs: number;
  /** The stream message for an item. */
  toWire(item: WatchItem): Out;
  /** The error the stream ends with, for an error thrown while watching. */
  toError(err: unknown): unknown;
}

type Signal = { change: Hash } | { resync: true };

const RESYNC: Signal = { resync: true };
const HEARTBEAT: WatchItem = { heartbeat: true };
const READ_LOG = Symbol('read the log');
const SKIP = Symbol('nothing new');

class Watch<Out> implements AsyncIterableIterator<Out>, WatchListener {
  private readonly box = new Mailbox<Signal>();
  /** Records read from the log (or the first one), not yet sent. */
  private backlog: TaskRecord[] = [];
  private id: string | undefined;
  private ref: TaskRef | undefined;
  private started = false;
  private ended = false;
  /** The last version sent. */
  private last = -1;
  /** A terminal version was sent: nothing more will come. */
  private done = false;
  /** Change snapshots leave out the immutable bulk; every record sent carries it. */
  private args: TaskRecord['args'];
  private kwargs: TaskRecord['kwargs'];

  constructor(
    private readonly deps: WatchDeps<Out>,
    ref: TaskRef,
    private readonly afterVersion: number | undefined,
    private readonly signal: AbortSignal,
  ) {
    this.ref = ref;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<Out>> {
    // The usual call — started, nothing in the backlog — waits on the mailbox alone, so a
    // quiet watcher holds one pending promise, not suspended async functions.
    if (this.started && this.backlog.length === 0 && !this.done && !this.ended) {
      return this.box.next(this.deps.heartbeatMs).then(
        (mail) => {
          let item: ReturnType<Watch<Out>['take']>;
          try {
            item = this.take(mail);
          } catch (err) {
            return this.failed(err);
          }
          return typeof item === 'symbol' ? this.later(this.step(item)) : this.result(item);
        },
        (err) => this.failed(err),
      );
    }
    return this.later(this.step());
  }

  private later(item: Promise<WatchItem | undefined>): Promise<IteratorResult<Out>> {
    return item.then(
      (it) => this.result(it),
      (err) => this.failed(err),
    );
  }

  private failed(err: unknown): never {
    this.end();
    throw this.deps.toError(err);
  }

  private result(item: WatchItem | undefined): IteratorResult<Out> {
    if (item === undefined) {
      this.end();
      return { done: true, value: undefined };
    }
    return { done: false, value: this.deps.toWire(item) };
  }

  async return(): Promise<IteratorResult<Out>> {
    this.end();
    return { done: true, value: undefined };
  }

  async throw(err: unknown): Promise<IteratorResult<Out>> {
    this.end();
    throw err;
  }

  // WatchListener (the hub) and EventListener (the call's abort signal)
  change(change: Hash): void {
    this.box.push({ change });
  }

  resync(): void {
    this.box.push(RESYNC);
  }

  handleEvent(): void {
    this.box.close();
  }

  /** The next item to send, or undefined at the end; READ_LOG first fills a gap from the log. */
  private async step(then?: typeof READ_LOG | typeof SKIP): Promise<WatchItem | undefined> {
    if (!this.started) {
      this.started = true;
      await this.begin();
    }
    if (then === READ_LOG) await this.readLog();
    for (;;) {
      const rec = this.backlog.shift();
      if (rec) {
        if (this.backlog.length === 0) this.backlog = []; // not the emptied array's capacity
        return { task: rec };
      }
      if (this.done || this.ended) return undefined;
      const item = this.take(await this.box.next(this.deps.heartbeatMs));
      if (item === READ_LOG) await this.readLog();
      else if (item !== SKIP) return item;
    }
  }

  /** What a message from the mailbox means: an item to send, the end (undefined), a gap, or nothing new. */
  private take(n: Next<Signal>): WatchItem | undefined | typeof READ_LOG | typeof SKIP {
    if ('closed' in n) {
      throwAbortStatus(this.signal);
      return undefined;
    }
    if ('timeout' in n) return HEARTBEAT;
    const s = n.item;
    if ('change' in s && Number(s.change.version) === this.last + 1) return { task: this.accept(s.change)! };
    if ('resync' in s || Number(s.change.version) > this.last + 1) return READ_LOG;
    return SKIP; // a version already sent
  }

  /** Subscribe, then read the record (and the log when resuming): the backlog to send first. */
  private async begin(): Promise<void> {
    const { store, hub } = this.deps;
    const id = (this.id = await store.resolve(this.ref!));
    this.ref = undefined;
    if (this.ended) return;
    hub.add(id, this);
    this.signal.addEventListener('abort', this);
    if (this.signal.aborted) this.box.close();
    await hub.ready();
    const full = await store.getHash(id);
    // Parsed once per watcher, not once per change; only args and kwargs are kept.
    const current = parseRecord(full);
    this.args = current.args;
    this.kwargs = current.kwargs;
    if (this.afterVersion === undefined) {
      this.backlog.push(this.accept(full)!);
      return;
    }
    this.last = this.afterVersion;
    await this.readLog();
    // A log trimmed past the caller's version still ends with the current record.
    if (!this.done && current.version > this.last) this.backlog.push(this.accept(full)!);
    // Resuming after the final version: nothing more will come.
    else if (isTerminal(current.state) && this.last >= current.version) this.done = true;
  }

  /** Fill a gap from the task's event log, up to its terminal version. */
  private async readLog(): Promise<void> {
    for (const h of await this.deps.store.readLog(this.id!, this.last)) {
      const rec = this.accept(h);
      if (rec) this.backlog.push(rec);
      if (this.done) return;
    }
  }

  /** The record to send for `h`, or undefined when that version was already sent. */
  private accept(h: Hash): TaskRecord | undefined {
    const v = Number(h.version);
    if (v <= this.last) return undefined;
    this.last = v;
    const rec = parseRecord(h);
    rec.args = this.args;
    rec.kwargs = this.kwargs;
    this.done = isTerminal(rec.state);
    return rec;
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.backlog = [];
    if (this.id !== undefined) {
      this.signal.removeEventListener('abort', this);
      this.deps.hub.remove(this.id, this);
    }
    this.box.close();
  }
}

/**
 * A stream closed by its call's signal ends with the status the signal carries, such as
 * a deadline's DEADLINE_EXCEEDED; a plain abort (a client that went away over HTTP/1.1)
 * carries none, and the stream just ends.
 */
export function throwAbortStatus(signal: AbortSignal): void {
  if (signal.aborted && signal.reason instanceof ConnectError) throw signal.reason;
}

/**
 * The stream of one `WatchStatus` call: the task `ref` names (resolved when the stream
 * starts), from `afterVersion` (exclusive) or from its current record, until its terminal
 * version, with a heartbeat item whenever the stream was quiet for `heartbeatMs`.
 */
export function watchTask<Out>(deps: WatchDeps<Out>, ref: TaskRef, afterVersion: number | undefined, signal: AbortSignal): AsyncIterableIterator<Out> {
  return new Watch(deps, ref, afterVersion, signal);
}
