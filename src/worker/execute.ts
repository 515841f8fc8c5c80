/**
 * Running one task's handler, wherever it runs: on a handler thread (thread.ts) or, for a
 * task defined with `inline: true`, on the worker's main thread (inline.ts). The handler
 * gets its arguments, its AbortSignal and a way to report progress; its return value is
 * encoded as JSON, or what it threw is described.
 */
import { EncodeError, encodeJson, type JsonValue } from '../json.js';
import type { TaskErrorInfo } from '../store/record.js';
import type { TaskRegistry } from '../tasks/define.js';

/** What a handler is run with: the fields of a run message (protocol.ts). */
export interface Execution {
  id: string;
  name: string;
  /** JSON text of the positional and keyword arguments. */
  args: string;
  kwargs: string;
  attempt: number;
  /** Set when a cancel came before the task started: its signal starts aborted. */
  aborted?: string;
}

/** How a handler ended: the JSON text of its result, or what it threw. */
export type Executed = { result: string; error?: undefined } | { result?: undefined; error: TaskErrorInfo };

export class TaskCancelled extends Error {
  override readonly name = 'AbortError';
}

export function describe(err: unknown): TaskErrorInfo {
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
export class Cancellation {
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

/** Run the handler of `m` to its end; `progress` gets the JSON text of each update. */
export async function execute(registry: TaskRegistry, m: Execution, cancellation: Cancellation, progress: (json: string) => void): Promise<Executed> {
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
        progress(encodeJson(update));
      },
    });
    try {
      return { result: encodeJson(value === undefined ? null : value) };
    } catch (err) {
      if (err instanceof EncodeError) {
        return { error: { type: 'EncodeError', message: `the result cannot be stored as JSON: ${err.message}` } };
      }
      throw err;
    }
  } catch (err) {
    return { error: describe(err) };
  }
}
