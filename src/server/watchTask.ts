/**
 * The watch invariant: a watcher sees every version after the one it starts from exactly
 * once, in order, whatever the timing. Subscribe first, then read the record and the log,
 * then forward live changes newer than the last one sent; any gap (a skipped version, a
 * reconnect) is filled from the task's event log, which is the truth.
 *
 * A watcher is held for as long as its stream is open, by the thousand on one server, so
 * it keeps little: its mailbox (which is also its hub listener and its abort listener, so
 * no closures), the last version sent, and the task's args and kwargs — not the record.
 */
import { parseRecord, type Hash, type TaskRecord } from '../store/record.js';
import { isTerminal } from '../store/states.js';
import type { TaskStore } from '../store/taskStore.js';
import { Mailbox } from './mailbox.js';
import type { WatchHub, WatchListener } from './watchHub.js';

export type WatchItem = { task: TaskRecord } | { heartbeat: true };

type Signal = { change: Hash } | { resync: true };

const RESYNC: Signal = { resync: true };

class Watcher extends Mailbox<Signal> implements WatchListener {
  /** The last version sent. */
  last = -1;
  done = false;
  /** Change snapshots leave out the immutable bulk; every record sent carries it. */
  args: unknown;
  kwargs: unknown;

  change(change: Hash): void {
    this.push({ change });
  }

  resync(): void {
    this.push(RESYNC);
  }

  /** The record to send for `h`, or undefined when that version was already sent. */
  accept(h: Hash): TaskRecord | undefined {
    const v = Number(h.version);
    if (v <= this.last) return undefined;
    this.last = v;
    const rec = parseRecord(h);
    rec.args = this.args as TaskRecord['args'];
    rec.kwargs = this.kwargs as TaskRecord['kwargs'];
    this.done = isTerminal(rec.state);
    return rec;
  }
}

async function* fromLog(store: TaskStore, id: string, w: Watcher): AsyncGenerator<WatchItem> {
  for (const h of await store.readLog(id, w.last)) {
    const rec = w.accept(h);
    if (rec) yield { task: rec };
    if (w.done) return;
  }
}

export async function* watchTask(
  store: TaskStore,
  hub: WatchHub,
  id: string,
  afterVersion: number | undefined,
  heartbeatMs: number,
  signal: AbortSignal,
): AsyncGenerator<WatchItem> {
  const w = new Watcher();
  hub.add(id, w);
  signal.addEventListener('abort', w);
  try {
    await hub.ready();
    let first: TaskRecord | undefined;
    {
      // Parsed once per watcher, not once per change; only args and kwargs are kept.
      const full = await store.getHash(id);
      const current = parseRecord(full);
      w.args = current.args;
      w.kwargs = current.kwargs;
      if (afterVersion === undefined) {
        first = w.accept(full)!;
      } else {
        w.last = afterVersion;
        yield* fromLog(store, id, w);
        // A log trimmed past the caller's version still ends with the current record.
        if (!w.done && current.version > w.last) first = w.accept(full)!;
        // Resuming after the final version: nothing more will come.
        else if (isTerminal(current.state) && w.last >= current.version) w.done = true;
      }
    }
    if (first) yield { task: first };

    while (!w.done) {
      const next = await w.next(heartbeatMs);
      if ('closed' in next) return;
      if ('timeout' in next) {
        yield { heartbeat: true };
        continue;
      }
      const s = next.item;
      if ('change' in s && Number(s.change.version) === w.last + 1) {
        yield { task: w.accept(s.change)! };
      } else if ('resync' in s || Number(s.change.version) > w.last + 1) {
        yield* fromLog(store, id, w);
      }
    }
  } finally {
    signal.removeEventListener('abort', w);
    hub.remove(id, w);
    w.close();
  }
}
