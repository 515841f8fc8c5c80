/**
 * The watch invariant: a watcher sees every version after the one it starts from exactly
 * once, in order, whatever the timing. Subscribe first, then read the record and the log,
 * then forward live changes newer than the last one sent; any gap (a skipped version, a
 * reconnect) is filled from the task's event log, which is the truth.
 *
 * A watcher is held for as long as its stream is open, by the thousand on one server, so
 * it is one plain object — the stream's iterator, its hub listener and its call-end listener —
 * that keeps the last version sent, the record at that version as Redis returned it (a
 * change may hold only the fields it wrote, and is applied onto it) and the task's args and
 * kwargs, nothing else. It is not an async generator on purpose: a suspended generator keeps
 * every register of its frame, parsed records and promises included.
 */
import { TaskwireError } from '../errors.js';
import { applyEntry, isWholeEntry, parseRecord, type Hash, type TaskRecord } from '../store/record.js';
import { isTerminal, type State } from '../store/states.js';
import type { TaskRef, TaskStore } from '../store/taskStore.js';
import { throwEndStatus, type CallEnd, type EndListener } from './callEnd.js';
import type { ConcurrencyLimit } from './concurrencyLimit.js';
import { Mailbox, type MailWaiter, type Next } from './mailbox.js';
import type { Pullable, PullSink } from './pullable.js';
import type { WatchHub, WatchListener } from './watchHub.js';

export type WatchItem = { task: TaskRecord } | { heartbeat: true };

/** What every watch of one service shares. */
export interface WatchDeps<Out> {
  store: TaskStore;
  hub: WatchHub;
  /** The reads of watches (the record that opens one, the log that fills a gap), a few
   * hundred at a time: after a Redis reconnect every watcher reads its log at once. */
  reads: ConcurrencyLimit;
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

class Watch<Out> implements AsyncIterableIterator<Out>, Pullable<Out>, WatchListener, EndListener, MailWaiter<Signal> {
  private readonly box = new Mailbox<Signal>();
  /** Who waits for the next result while the mailbox is waited on. */
  private sink: PullSink<Out> | undefined;
  /** Records read from the log (or the first one), not yet sent; none held while there are none. */
  private backlog: TaskRecord[] | undefined;
  private id: string | undefined;
  private ref: TaskRef | undefined;
  private started = false;
  private ended = false;
  /** The last version sent. */
  private last = -1;
  /** A terminal version was sent: nothing more will come. */
  private done = false;
  /** The record at the last version sent (log entries and changes may hold only the fields
   * a change wrote: each is applied onto it). */
  private base: Hash | undefined;
  /** Change snapshots leave out the immutable bulk; every record sent carries it. */
  private args: TaskRecord['args'];
  private kwargs: TaskRecord['kwargs'];

  constructor(
    private readonly deps: WatchDeps<Out>,
    ref: TaskRef,
    private readonly afterVersion: number | undefined,
    private readonly callEnd: CallEnd,
  ) {
    this.ref = ref;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<Out>> {
    return new Promise((result, error) => this.pull({ result, error }));
  }

  pull(sink: PullSink<Out>): void {
    // The usual call — started, nothing in the backlog — waits on the mailbox alone, so a
    // quiet watcher holds the sink it will answer and nothing else: no promise, no
    // suspended async function.
    if (this.started && this.backlog === undefined && !this.done && !this.ended) {
      this.sink = sink;
      this.box.wait(this.deps.heartbeatMs, this);
    } else this.later(this.step(), sink);
  }

  // MailWaiter: what the mailbox had for the sink that waits.
  mail(mail: Next<Signal>): void {
    const sink = this.sink!;
    this.sink = undefined;
    let item: ReturnType<Watch<Out>['take']>;
    try {
      item = this.take(mail);
    } catch (err) {
      return sink.error(this.failed(err));
    }
    if (typeof item === 'symbol') this.later(this.step(item), sink);
    else this.answer(item, sink);
  }

  private later(item: Promise<WatchItem | undefined>, sink: PullSink<Out>): void {
    item.then(
      (it) => this.answer(it, sink),
      (err) => sink.error(this.failed(err)),
    );
  }

  private answer(item: WatchItem | undefined, sink: PullSink<Out>): void {
    let r: IteratorResult<Out>;
    try {
      r = this.result(item);
    } catch (err) {
      return sink.error(this.failed(err));
    }
    sink.result(r);
  }

  /** Ends the watch; the error the stream ends with. */
  private failed(err: unknown): unknown {
    this.end();
    return this.deps.toError(err);
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

  // WatchListener (the hub) and EndListener (the call's end)
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
      const rec = this.backlog?.shift();
      if (rec) {
        if (this.backlog!.length === 0) this.backlog = undefined;
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
      throwEndStatus(this.callEnd);
      return undefined;
    }
    if ('timeout' in n) return HEARTBEAT;
    const s = n.item;
    if ('resync' in s) return READ_LOG;
    const version = Number(s.change.version);
    // The task finished below the version this watch resumed from: what it waits for never comes.
    if (version < this.last && isTerminal(s.change.state as State)) throw beyondFinal(this.last, version);
    if (version > this.held + 1) return READ_LOG;
    if (version <= this.held) return SKIP; // a version already applied
    const rec = this.accept(s.change);
    return rec ? { task: rec } : SKIP; // applied, not sent: the watch resumed from a later version
  }

  /** The version of the record held (`base`): the next change applies onto it. */
  private get held(): number {
    return this.base ? Number(this.base.version) : this.last;
  }

  /** Subscribe, then read the record (and the log when resuming): the backlog to send first. */
  private async begin(): Promise<void> {
    const { store, hub } = this.deps;
    const id = await store.resolve(this.ref!);
    const queue = store.queueOf(id); // refuses a malformed id before anything is held
    this.id = id;
    this.ref = undefined;
    if (this.ended) return;
    this.callEnd.add(this);
    await hub.add(id, queue, this);
    const full = await this.deps.reads.run(() => store.getHash(id));
    // Parsed once: it is the first record sent, and its args and kwargs go with every later one.
    const current = parseRecord(full);
    this.args = current.args;
    this.kwargs = current.kwargs;
    if (this.afterVersion === undefined) {
      this.base = full;
      this.queue(this.acceptRecord(current));
      return;
    }
    // A finished task has no version after its final one: a watch from beyond it would wait forever.
    if (isTerminal(current.state) && this.afterVersion > current.version) throw beyondFinal(this.afterVersion, current.version);
    this.last = this.afterVersion;
    await this.replayLog();
    // A log trimmed past the caller's version still ends with the current record.
    if (!this.done && current.version > this.last) {
      this.base = full;
      this.queue(this.acceptRecord(current));
    }
    // Resuming after the final version: nothing more will come.
    else if (isTerminal(current.state) && this.last >= current.version) this.done = true;
    if (!this.base || Number(this.base.version) < current.version) this.base = full;
  }

  /** Resuming after a version: the records after it, rebuilt from the log's first entry
   * (the whole record at creation) by applying every later change in order. A log trimmed
   * past its first entry rebuilds nothing; the current record follows (begin). */
  private async replayLog(): Promise<void> {
    const { store, reads } = this.deps;
    let rebuilt: Hash | undefined;
    for (const h of await reads.run(() => store.readLog(this.id!, 0))) {
      rebuilt = applyEntry(rebuilt, h);
      if (!rebuilt) return;
      this.base = rebuilt;
      if (Number(h.version) <= this.last) continue;
      this.queue(this.acceptRecord(parseRecord(rebuilt)));
      if (this.done) return;
    }
  }

  /** Fill a gap from the task's event log, up to its terminal version. */
  private async readLog(): Promise<void> {
    const { store, reads } = this.deps;
    for (const h of await reads.run(() => store.readLog(this.id!, this.held))) {
      if (Number(h.version) <= this.held) continue;
      // A change that does not follow the version held (the log was trimmed past it): the
      // record as it is now instead, which no entry read here is newer than.
      if (!isWholeEntry(h) && Number(h.version) !== this.held + 1) {
        const rec = this.accept(await reads.run(() => store.getHash(this.id!)));
        if (rec) this.queue(rec);
        return;
      }
      const rec = this.accept(h);
      if (rec) this.queue(rec);
      if (this.done) return;
    }
  }

  private queue(rec: TaskRecord): void {
    (this.backlog ??= []).push(rec);
  }

  /** Apply `h` onto the record held: the record to send, or undefined when that version was already sent. */
  private accept(h: Hash): TaskRecord | undefined {
    const whole = applyEntry(this.base, h);
    if (!whole) return undefined;
    this.base = whole;
    return Number(h.version) <= this.last ? undefined : this.acceptRecord(parseRecord(whole));
  }

  /** `rec` (newer than the last version sent) as the next record to send. */
  private acceptRecord(rec: TaskRecord): TaskRecord {
    this.last = rec.version;
    rec.args = this.args;
    rec.kwargs = this.kwargs;
    this.done = isTerminal(rec.state);
    return rec;
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.backlog = undefined;
    this.base = undefined;
    if (this.id !== undefined) {
      this.callEnd.remove(this);
      this.deps.hub.remove(this.id, this.deps.store.queueOf(this.id), this);
    }
    this.box.close();
  }
}

/** A resume point past a finished task's final version. */
function beyondFinal(afterVersion: number, finalVersion: number): TaskwireError {
  return new TaskwireError(
    'out_of_range',
    `after_version ${afterVersion} is beyond the task's final version ${finalVersion}: the task has finished and no later version will come; watch without after_version for its final record`,
    { reason: 'VERSION_NOT_REACHED', metadata: { final_version: String(finalVersion) } },
  );
}

/**
 * The stream of one `WatchStatus` call: the task `ref` names (resolved when the stream
 * starts), from `afterVersion` (exclusive) or from its current record, until its terminal
 * version, with a heartbeat item whenever the stream was quiet for `heartbeatMs`.
 */
export function watchTask<Out>(deps: WatchDeps<Out>, ref: TaskRef, afterVersion: number | undefined, callEnd: CallEnd): AsyncIterableIterator<Out> {
  return new Watch(deps, ref, afterVersion, callEnd);
}
