/**
 * How an attempt ends: the state its outcome leads to (endOf), and writing that state
 * (writeEnd), which rides out a Redis outage or a Redis that refuses writes for a while
 * (out of memory, failover).
 */
import type { Logger } from '../log.js';
import { isConnectionError, isPassingRefusal } from '../redis.js';
import type { AttemptStore, Delivery, EndFields, EndState } from '../store/attemptStore.js';
import type { RunnableTask } from '../store/record.js';
import { backoffMs, shouldRetry } from './retryPolicy.js';
import type { Outcome } from './slot.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The state an attempt ends in. A cancel request overrides it in the finish script. */
export function endOf(task: RunnableTask, outcome: Outcome): [EndState, EndFields] {
  switch (outcome.kind) {
    case 'returned':
      return ['SUCCESS', { result: outcome.result }];
    case 'killed':
      if (outcome.why === 'shutdown') return ['PENDING', {}];
      if (outcome.why === 'terminate') {
        return ['REVOKED', { errorType: 'TaskRevokedError', errorMessage: 'terminated by a cancel request' }];
      }
      return [
        'FAILURE',
        {
          errorType: 'TimeLimitExceeded',
          errorMessage: `the task ran past its hard time limit of ${(task.timeLimitMs ?? 0) / 1000}s and was stopped`,
        },
      ];
    case 'crashed':
      return failOrRetry(task, { type: 'WorkerLostError', message: `the handler thread died: ${outcome.message}` });
    case 'threw':
      return failOrRetry(task, outcome.error);
  }
}

function failOrRetry(task: RunnableTask, error: { type: string; message: string; traceback?: string }): [EndState, EndFields] {
  const fields: EndFields = { errorType: error.type, errorMessage: error.message, traceback: error.traceback };
  if (!shouldRetry(task, error.type)) return ['FAILURE', fields];
  return ['RETRY', { ...fields, nextAttemptAt: Date.now() + backoffMs(task) }];
}

/**
 * Write the end of an attempt, tried again until it is written or the script says the
 * attempt is stale (its lease was lost). Returns the state written, or undefined when the
 * attempt was stale. The first try is queued for this turn by the time this returns its
 * promise.
 */
export async function writeEnd(
  attempts: AttemptStore,
  log: Logger,
  d: Delivery,
  token: string,
  state: EndState,
  fields: EndFields,
): Promise<string | undefined> {
  for (let wait = 100, warned = false; ; wait = Math.min(wait * 2, 2000)) {
    try {
      const r = await attempts.finish(d, token, state, fields);
      if (!r.written) log.warn(`task ${d.id}: result of a stale attempt discarded (task is ${r.state})`);
      return r.written ? r.state : undefined;
    } catch (err) {
      if (!isConnectionError(err) && !isPassingRefusal(err)) throw err;
      if (!warned && isPassingRefusal(err)) {
        log.warn(`task ${d.id}: Redis refused its ${state} (${(err as Error).message}); trying again until it is written`);
        warned = true;
      }
      await sleep(wait);
    }
  }
}
