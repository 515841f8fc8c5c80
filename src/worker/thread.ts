/**
 * A handler thread: loads the task registry once, then runs the tasks posted to it one at
 * a time, in order (see protocol.ts for the handshake that lets the main thread kill one of
 * them alone). It runs off the worker's main event loop, so a handler that blocks (even a
 * busy loop) cannot starve the heartbeat.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { loadRegistry, type TaskRegistry } from '../tasks/define.js';
import { Cancellation, execute } from './execute.js';
import {
  cellValue,
  clock,
  CELLS,
  DONE,
  HOLD,
  QUEUED,
  RUNNING,
  STARTED_AT,
  type DoneMessage,
  type FromThread,
  type RunMessage,
  type ToThread,
  unpackRuns,
} from './protocol.js';

const port = parentPort!;
const post = (m: FromThread) => port.postMessage(m);
const { tasksModule, shared: sharedBuffer } = workerData as { tasksModule: string; shared: SharedArrayBuffer };
const shared = new Int32Array(sharedBuffer);

let registry: TaskRegistry;
const queue: RunMessage[] = [];
let pumping = false;
let current: Cancellation | undefined;

async function run(m: RunMessage, cancellation: Cancellation): Promise<Omit<DoneMessage, 'ms'>> {
  const done = await execute(registry, m, cancellation, (progress) => post({ type: 'progress', cell: m.cell, tag: m.tag, progress }));
  return { type: 'done', cell: m.cell, tag: m.tag, ...done };
}

/** Run the queued tasks one after another; a task taken back by the main thread is skipped. */
async function pump(): Promise<void> {
  pumping = true;
  while (queue.length > 0) {
    const m = queue.shift()!;
    const cell = CELLS + m.cell;
    while (Atomics.load(shared, HOLD) === 1) Atomics.wait(shared, HOLD, 1);
    if (Atomics.compareExchange(shared, cell, cellValue(m.tag, QUEUED), cellValue(m.tag, RUNNING)) !== cellValue(m.tag, QUEUED)) {
      continue; // withdrawn: it runs elsewhere, or not at all
    }
    Atomics.store(shared, STARTED_AT, clock());
    current = new Cancellation(m.id);
    const began = performance.now();
    const done = await run(m, current);
    current = undefined;
    // DONE before the message: once the main thread has the result it may reuse the cell.
    Atomics.store(shared, cell, cellValue(m.tag, DONE));
    post({ ...done, ms: performance.now() - began });
  }
  pumping = false;
}

async function main(): Promise<void> {
  registry = await loadRegistry(tasksModule);
  port.on('message', (m: ToThread) => {
    if (m.type === 'abort') {
      if (current?.id === m.id) current.abort(m.reason);
      else {
        const queued = queue.find((q) => q.id === m.id);
        if (queued) queued.aborted ??= m.reason;
      }
      return;
    }
    queue.push(...unpackRuns(m.runs));
    if (!pumping) void pump();
  });
  // The tasks that run on the worker's main thread instead (defineTask's `inline`).
  post({ type: 'ready', inline: registry.names().filter((name) => registry.get(name)?.inline === true) });
}

main().catch((err: Error) => post({ type: 'fatal', message: err.message }));
