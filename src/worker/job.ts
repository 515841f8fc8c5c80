/** A task handed to the handler threads: what runs, where its outcome goes, and how it can end. */
import type { TaskErrorInfo } from '../store/record.js';
import type { RunMessage } from './protocol.js';

export type KillReason = 'terminate' | 'time_limit' | 'shutdown';

export type Outcome =
  | { kind: 'returned'; result: string }
  | { kind: 'threw'; error: TaskErrorInfo }
  | { kind: 'killed'; why: KillReason }
  | { kind: 'crashed'; message: string };

export interface Job {
  message: Omit<RunMessage, 'cell' | 'tag'>;
  onProgress: (json: string) => void;
  settle: (o: Outcome) => void;
  /** The thread it is posted to, while it is (handlerThread.ts). */
  thread?: JobThread;
  killedWith?: KillReason;
  /** Order of submission, so jobs handed back keep their turn. */
  seq: number;
}

/** What a job can ask of the thread it is posted to. */
export interface JobThread {
  abort(job: Job, reason: string): void;
  kill(job: Job, why: KillReason): void;
}
