/**
 * A handler thread: loads the task registry once, then runs the tasks posted to it one at
 * a time, in order (see protocol.ts for the handshake that lets the main thread kill one of
 * them alone). It runs off the worker's main event loop, so a handler that blocks (even a
 * busy loop) cannot starve the heartbeat.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { EncodeError, encodeJson, type JsonValue } from '../json.js';
import type { TaskErrorInfo } from '../store/record.js';
import { loadRegistry, type TaskRegistry } from '../tasks/define.js';
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

class TaskCancelled extends Error {
  override readonly name = 'AbortError';
}

function describe(err: unknown): TaskErrorInfo {
  if (err instanceof Error) {
    const type = err.name && err.name !== 'Error' ? err.name : (err.constructor?.name ?? 'Error');
    return { type, message: err.message, traceback: err.stack ?? '' };
  }
  return { type: 'Error', message: String(err) };
}

/**
 * The cancellation of one running task. Its AbortSignal is made when the handler first
 * reads it: most handlers never do, and an AbortController costs more than the rest of a
 * short task's run. A cancel that came before sets the signal aborted as it is made.
 */
class Cancellation {
  private controller: AbortController | undefined;
  private reason: TaskCancelled | undefined;

  constructor(readonly id: string) {}

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.reason) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  abort(reason: string): void {
    this.reason ??= new TaskCancelled(reason);
    this.controller?.abort(this.reason);
  }
}

let registry: TaskRegistry;
const queue: RunMessage[] = [];
let pumping = false;
let current: Cancellation | undefined;

async function execute(m: RunMessage, cancellation: Cancellation): Promise<Omit<DoneMessage, 'ms'>> {
  const base = { type: 'done', cell: m.cell, tag: m.tag } as const;
  try {
    const def = registry.get(m.name);
    if (!def) throw Object.assign(new Error(`no task "${m.name}" is registered on this worker`), { name: 'NotRegistered' });
    if (m.aborted !== undefined) cancellation.abort(m.aborted);
    const value = await def.run({
      id: m.id,
      name: m.name,
      args: JSON.parse(m.args) as JsonValue[],
      kwargs: JSON.parse(m.kwargs) as Record<string, JsonValue>,
      attempt: m.attempt,
      get signal() {
        return cancellation.signal;
      },
      progress: (update) => {
        if (typeof update !== 'object' || update === null || Array.isArray(update)) {
          throw new TypeError('progress must be a JSON object');
        }
        post({ type: 'progress', cell: m.cell, tag: m.tag, progress: encodeJson(update) });
      },
    });
    try {
      return { ...base, result: encodeJson(value === undefined ? null : value) };
    } catch (err) {
      if (err instanceof EncodeError) {
        return { ...base, error: { type: 'EncodeError', message: `the result cannot be stored as JSON: ${err.message}` } };
      }
      throw err;
    }
  } catch (err) {
    return { ...base, error: describe(err) };
  }
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
    const done = await execute(m, current);
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
  post({ type: 'ready' });
}

main().catch((err: Error) => post({ type: 'fatal', message: err.message }));
