/**
 * Between a worker's main thread and the threads that run handlers: messages, and a small
 * shared memory per thread.
 *
 * A thread runs the tasks posted to it one at a time, in order, so several fast tasks can
 * wait on one thread without a round trip through the main thread between them. To stop
 * one task by force without touching another, each posted task has a cell in the shared
 * memory that says, without a message, whether it is QUEUED, RUNNING or DONE:
 *
 * - the thread starts a task only by turning its cell QUEUED → RUNNING (compare-and-swap),
 *   and only while HOLD is 0; it marks it DONE before posting the result;
 * - the main thread takes back a task that has not started by turning QUEUED → WITHDRAWN
 *   (it then never starts there, and can be posted to another thread);
 * - to kill a task that may be running, the main thread sets HOLD, then reads the cell:
 *   RUNNING means the thread is inside that task and will start no other (it checks HOLD
 *   after marking a task DONE, before starting the next), so terminating the thread stops
 *   that task alone; DONE means it already finished, and HOLD is cleared again.
 *
 * Each cell value carries a tag (which posting it belongs to) beside the status, so a cell
 * can be reused at once for another task and a stale copy never matches.
 */
import type { TaskErrorInfo } from '../store/record.js';
import type { Execution } from './execute.js';

export const HOLD = 0;
/** Low 30 bits of Date.now() when the running task started (see clock()). */
export const STARTED_AT = 1;
/** Index of the first task cell. */
export const CELLS = 2;

export const QUEUED = 0;
export const RUNNING = 1;
export const DONE = 2;
export const WITHDRAWN = 3;

export const cellValue = (tag: number, status: number): number => (tag << 2) | status;
/** Tags wrap well within an Int32 cell. */
export const TAG_MASK = (1 << 28) - 1;
/** A millisecond clock both sides can store in an Int32; compare with clockDiff. */
export const clock = (): number => Date.now() & 0x3fffffff;
export const clockDiff = (later: number, earlier: number): number => (later - earlier) & 0x3fffffff;

/** A task to run: what its handler is run with, and where its answer goes. */
export interface RunMessage extends Execution {
  type: 'run';
  /** This posting's cell (index after CELLS) and tag. */
  cell: number;
  tag: number;
}

export interface AbortMessage {
  type: 'abort';
  id: string;
  reason: string;
}

/** Runs posted in the same tick travel as one message (a message costs more than a run),
 * flat: RUN_WIDTH values per run (see packRun), which clones much faster than objects. */
export interface RunsMessage {
  type: 'runs';
  runs: (string | number | null)[];
}

export const RUN_WIDTH = 8;

/** Append a run (posted in `cell` with `tag`) to a RunsMessage's list. */
export function packRun(out: RunsMessage['runs'], cell: number, tag: number, m: Omit<RunMessage, 'type' | 'cell' | 'tag'>): void {
  out.push(cell, tag, m.id, m.name, m.args, m.kwargs, m.attempt, m.aborted ?? null);
}

/** The runs of a RunsMessage. */
export function unpackRuns(flat: RunsMessage['runs']): RunMessage[] {
  const out: RunMessage[] = [];
  for (let i = 0; i + RUN_WIDTH <= flat.length; i += RUN_WIDTH) {
    const run: RunMessage = {
      type: 'run',
      cell: flat[i] as number,
      tag: flat[i + 1] as number,
      id: flat[i + 2] as string,
      name: flat[i + 3] as string,
      args: flat[i + 4] as string,
      kwargs: flat[i + 5] as string,
      attempt: flat[i + 6] as number,
    };
    if (flat[i + 7] !== null) run.aborted = flat[i + 7] as string;
    out.push(run);
  }
  return out;
}

export type ToThread = RunsMessage | AbortMessage;

export interface ReadyMessage {
  type: 'ready';
  /** The registry's tasks defined with `inline: true` (run on the main thread instead). */
  inline: string[];
}

export interface ProgressMessage {
  type: 'progress';
  cell: number;
  tag: number;
  /** JSON text of a JSON object. */
  progress: string;
}

export interface DoneMessage {
  type: 'done';
  cell: number;
  tag: number;
  /** JSON text of the result, when the handler returned a JSON value. */
  result?: string;
  error?: TaskErrorInfo;
  /** How long the handler ran (ms). */
  ms: number;
}

export interface FatalMessage {
  type: 'fatal';
  message: string;
}

export type FromThread = ReadyMessage | ProgressMessage | DoneMessage | FatalMessage;
