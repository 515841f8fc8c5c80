/** Whether a failed attempt runs again, and when: exponential backoff with jitter. */
import { TASK_DEFAULTS } from '../tasks/define.js';
import type { TaskRecord } from '../store/record.js';

/** Errors that no retry can mend. */
const FINAL = new Set(['EncodeError', 'TimeLimitExceeded', 'NotRegistered', 'TaskRevokedError', 'AbortError']);

/** What the retry policy reads of a task. */
export type RetryFacts = Pick<TaskRecord, 'attempt' | 'maxAttempts' | 'retryOn' | 'initialBackoffMs' | 'maxBackoffMs'>;

export function shouldRetry(task: RetryFacts, errorType: string): boolean {
  if (task.attempt >= task.maxAttempts || FINAL.has(errorType)) return false;
  if (errorType === 'WorkerLostError') return true;
  const retryOn = task.retryOn ?? [];
  return retryOn.includes('*') || retryOn.includes(errorType);
}

/** Delay before the next attempt: initial·2^(attempt-1), capped, then "equal jitter"
 * (half fixed, half random) so that retries of many tasks spread out. */
export function backoffMs(task: RetryFacts, random = Math.random): number {
  const initial = task.initialBackoffMs ?? TASK_DEFAULTS.initialBackoffMs;
  const max = task.maxBackoffMs ?? TASK_DEFAULTS.maxBackoffMs;
  const base = Math.min(max, initial * 2 ** Math.max(0, task.attempt - 1));
  return Math.round(base / 2 + random() * (base / 2));
}
