/**
 * The watch invariant: a watcher sees every version after the one it starts from exactly
 * once, in order, whatever the timing. Subscribe first, then read the record and the log,
 * then forward live changes newer than the last one sent; any gap (a skipped version, a
 * reconnect) is filled from the task's event log, which is the truth.
 */
import { parseRecord, type Hash, type TaskRecord } from '../store/record.js';
import { isTerminal } from '../store/states.js';
import type { TaskStore } from '../store/taskStore.js';
import { Mailbox } from './mailbox.js';
import type { WatchHub } from './watchHub.js';

export type WatchItem = { task: TaskRecord } | { heartbeat: true };

type Signal = { change: Hash } | { resync: true };

export async function* watchTask(
  store: TaskStore,
  hub: WatchHub,
  id: string,
  afterVersion: number | undefined,
  heartbeatMs: number,
  signal: AbortSignal,
): AsyncGenerator<WatchItem> {
  const box = new Mailbox<Signal>();
  const unwatch = hub.watch(id, { change: (change) => box.push({ change }), resync: () => box.push({ resync: true }) });
  const onAbort = () => box.close();
  signal.addEventListener('abort', onAbort);
  try {
    await hub.ready();
    const full = await store.getHash(id);
    // Change snapshots leave out the immutable bulk; every record sent carries it.
    // Parsed once per watcher, not once per change.
    const current = parseRecord(full);
    const complete = (h: Hash): TaskRecord => ({ ...parseRecord(h), args: current.args, kwargs: current.kwargs });
    let last: number;
    let done = false;

    const send = (h: Hash): TaskRecord | undefined => {
      const v = Number(h.version);
      if (v <= last) return undefined;
      last = v;
      const rec = complete(h);
      done = isTerminal(rec.state);
      return rec;
    };
    const fromLog = async function* () {
      for (const h of await store.readLog(id, last)) {
        const rec = send(h);
        if (rec) yield { task: rec };
        if (done) return;
      }
    };

    if (afterVersion === undefined) {
      last = -1;
      yield { task: send(full)! };
    } else {
      last = afterVersion;
      yield* fromLog();
      // A log trimmed past the caller's version still ends with the current record.
      if (!done && Number(full.version) > last) yield { task: send(full)! };
      // Resuming after the final version: nothing more will come.
      if (isTerminal(current.state) && last >= current.version) done = true;
    }

    while (!done) {
      const next = await box.next(heartbeatMs);
      if ('closed' in next) return;
      if ('timeout' in next) {
        yield { heartbeat: true };
        continue;
      }
      const s = next.item;
      if ('change' in s && Number(s.change.version) === last + 1) {
        yield { task: send(s.change)! };
      } else if ('resync' in s || Number(s.change.version) > last + 1) {
        yield* fromLog();
      }
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    unwatch();
  }
}
