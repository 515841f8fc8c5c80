/** Messages between a worker's main thread and the threads that run handlers. */
import type { TaskErrorInfo } from '../store/record.js';

export interface RunMessage {
  type: 'run';
  id: string;
  name: string;
  /** JSON text of the positional and keyword arguments. */
  args: string;
  kwargs: string;
  attempt: number;
}

export interface AbortMessage {
  type: 'abort';
  id: string;
  reason: string;
}

export type ToThread = RunMessage | AbortMessage;

export interface ReadyMessage {
  type: 'ready';
}

export interface ProgressMessage {
  type: 'progress';
  id: string;
  /** JSON text of a JSON object. */
  progress: string;
}

export interface DoneMessage {
  type: 'done';
  id: string;
  /** JSON text of the result, when the handler returned a JSON value. */
  result?: string;
  error?: TaskErrorInfo;
}

export interface FatalMessage {
  type: 'fatal';
  message: string;
}

export type FromThread = ReadyMessage | ProgressMessage | DoneMessage | FatalMessage;
