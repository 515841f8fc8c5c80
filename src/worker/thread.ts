/**
 * A handler thread: loads the task registry once, then runs one task at a time for its
 * slot. It runs off the worker's main event loop, so a handler that blocks (even a busy
 * loop) cannot starve the heartbeat, and terminating this thread stops only this task.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { EncodeError, encodeJson, type JsonValue } from '../json.js';
import type { TaskErrorInfo } from '../store/record.js';
import { loadRegistry } from '../tasks/define.js';
import type { FromThread, ToThread } from './protocol.js';

const port = parentPort!;
const post = (m: FromThread) => port.postMessage(m);

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

async function main(): Promise<void> {
  const registry = await loadRegistry((workerData as { tasksModule: string }).tasksModule);
  let controller: AbortController | undefined;
  let current: string | undefined;

  port.on('message', async (m: ToThread) => {
    if (m.type === 'abort') {
      if (m.id === current) controller?.abort(new TaskCancelled(m.reason));
      return;
    }
    const def = registry.get(m.name);
    current = m.id;
    controller = new AbortController();
    try {
      if (!def) throw Object.assign(new Error(`no task "${m.name}" is registered on this worker`), { name: 'NotRegistered' });
      const value = await def.run({
        id: m.id,
        name: m.name,
        args: JSON.parse(m.args) as JsonValue[],
        kwargs: JSON.parse(m.kwargs) as Record<string, JsonValue>,
        attempt: m.attempt,
        signal: controller.signal,
        progress: (update) => {
          if (typeof update !== 'object' || update === null || Array.isArray(update)) {
            throw new TypeError('progress must be a JSON object');
          }
          post({ type: 'progress', id: m.id, progress: encodeJson(update) });
        },
      });
      let result: string;
      try {
        result = encodeJson(value === undefined ? null : value);
      } catch (err) {
        if (err instanceof EncodeError) {
          post({ type: 'done', id: m.id, error: { type: 'EncodeError', message: `the result cannot be stored as JSON: ${err.message}` } });
          return;
        }
        throw err;
      }
      post({ type: 'done', id: m.id, result });
    } catch (err) {
      post({ type: 'done', id: m.id, error: describe(err) });
    } finally {
      current = undefined;
      controller = undefined;
    }
  });
  post({ type: 'ready' });
}

main().catch((err: Error) => post({ type: 'fatal', message: err.message }));
