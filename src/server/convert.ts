/** Between wire messages (taskwire.v1) and the domain (TaskRecord, StartInput). */
import { create, fromJson, toJson } from '@bufbuild/protobuf';
import {
  durationMs,
  type ListValue,
  ListValueSchema,
  timestampFromMs,
  timestampMs,
  ValueSchema,
  type Duration,
  type Timestamp,
} from '@bufbuild/protobuf/wkt';
import { TaskErrorSchema, TaskSchema, TaskState, type Task } from '../../gen/taskwire/v1/task_pb.js';
import type { StartRequest } from '../../gen/taskwire/v1/task_service_pb.js';
import { invalid } from '../errors.js';
import type { JsonValue } from '../json.js';
import type { TaskRecord } from '../store/record.js';
import type { State } from '../store/states.js';
import type { StartInput } from '../store/taskStore.js';

const STATE_TO_WIRE: Record<State, TaskState> = {
  PENDING: TaskState.PENDING,
  STARTED: TaskState.STARTED,
  RETRY: TaskState.RETRY,
  SUCCESS: TaskState.SUCCESS,
  FAILURE: TaskState.FAILURE,
  REVOKED: TaskState.REVOKED,
};

export function stateToWire(state: State): TaskState {
  return STATE_TO_WIRE[state];
}

export function stateFromWire(state: TaskState): State | undefined {
  return (Object.keys(STATE_TO_WIRE) as State[]).find((s) => STATE_TO_WIRE[s] === state);
}

const ts = (ms: number | undefined): Timestamp | undefined => (ms ? timestampFromMs(ms) : undefined);

export function taskToWire(rec: TaskRecord): Task {
  return create(TaskSchema, {
    id: rec.id,
    name: rec.name,
    queue: rec.queue,
    state: stateToWire(rec.state),
    args: rec.args ? fromJson(ListValueSchema, rec.args) : undefined,
    kwargs: rec.kwargs,
    result: rec.result !== undefined ? fromJson(ValueSchema, rec.result) : undefined,
    error: rec.error
      ? create(TaskErrorSchema, { type: rec.error.type, message: rec.error.message, traceback: rec.error.traceback ?? '' })
      : undefined,
    progress: rec.progress,
    attempt: rec.attempt,
    maxAttempts: rec.maxAttempts,
    version: BigInt(rec.version),
    worker: rec.worker ?? '',
    exclusiveKey: rec.exclusiveKey ?? '',
    idempotencyKey: rec.idempotencyKey ?? '',
    cancelRequested: rec.cancel !== undefined,
    createdAt: ts(rec.createdAt),
    startedAt: ts(rec.startedAt),
    finishedAt: ts(rec.finishedAt),
    updatedAt: ts(rec.updatedAt),
    notBefore: ts(rec.notBefore),
    expiresAt: ts(rec.expiresAt),
    nextAttemptAt: ts(rec.nextAttemptAt),
    parentId: rec.parentId ?? '',
    children: rec.children ?? [],
    scheduleId: rec.scheduleId ?? '',
  });
}

/** A ListValue as JSON. The binary encoding carries numbers JSON cannot (NaN, Infinity),
 * which the caller sent: refused as its mistake, not failed as the server's. */
function argsFromWire(args: ListValue | undefined): JsonValue[] {
  if (!args) return [];
  try {
    return toJson(ListValueSchema, args) as JsonValue[];
  } catch {
    throw invalid('args', 'holds a number JSON cannot carry (NaN or Infinity)');
  }
}

const ms = (d: Duration | undefined): number | undefined => (d ? durationMs(d) : undefined);
const at = (t: Timestamp | undefined): number | undefined => (t ? timestampMs(t) : undefined);

export function startInputFromWire(req: StartRequest): StartInput {
  return {
    name: req.name,
    args: argsFromWire(req.args),
    kwargs: (req.kwargs ?? {}) as StartInput['kwargs'],
    queue: req.queue || undefined,
    exclusiveKey: req.exclusiveKey || undefined,
    idempotencyKey: req.idempotencyKey || undefined,
    notBefore: at(req.notBefore),
    countdownMs: ms(req.countdown),
    expiresAt: at(req.expiresAt),
    timeLimitMs: ms(req.timeLimit),
    maxAttempts: req.retry?.maxAttempts || undefined,
    initialBackoffMs: ms(req.retry?.initialBackoff),
    maxBackoffMs: ms(req.retry?.maxBackoff),
    retryOn: req.retry?.retryOn.length ? req.retry.retryOn : undefined,
  };
}
