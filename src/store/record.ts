/**
 * The task record as Redis keeps it (a hash of strings) and as the code uses it.
 * Field names here are the hash's; the event log and pub/sub carry the same fields.
 */
import type { JsonObject, JsonValue } from '../json.js';
import { STATES, type State } from './states.js';

export interface TaskErrorInfo {
  type: string;
  message: string;
  traceback?: string;
}

export interface TaskRecord {
  id: string;
  name: string;
  queue: string;
  state: State;
  args?: JsonValue[];
  kwargs?: JsonObject;
  result?: JsonValue;
  error?: TaskErrorInfo;
  progress?: JsonObject;
  attempt: number;
  maxAttempts: number;
  version: number;
  worker?: string;
  exclusiveKey?: string;
  idempotencyKey?: string;
  /** 'abort' or 'terminate' once a cancel was asked for while it ran. */
  cancel?: 'abort' | 'terminate';
  cancelReason?: string;
  createdAt: number;
  startedAt?: number;
  finishedAt?: number;
  updatedAt: number;
  notBefore?: number;
  expiresAt?: number;
  nextAttemptAt?: number;
  timeLimitMs?: number;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  retryOn?: string[];
  /** W3C traceparent of the span that started the task (the API's), for the worker's logs. */
  traceparent?: string;
  /** The workflow this task belongs to. */
  parentId?: string;
  /** A workflow: true. */
  workflow?: boolean;
  /** A workflow's tasks, in the order they were created (read apart from the record). */
  children?: string[];
  /** The schedule whose tick started the task. */
  scheduleId?: string;
}

export type Hash = Record<string, string>;

/** Pairs [k1, v1, k2, v2, …] (as Lua returns them) to an object. */
export function pairsToHash(flat: readonly string[]): Hash {
  const hash: Hash = {};
  for (let i = 0; i + 1 < flat.length; i += 2) hash[flat[i]!] = flat[i + 1]!;
  return hash;
}

const num = (s: string | undefined): number | undefined => (s === undefined || s === '' ? undefined : Number(s));
const json = <T>(s: string | undefined): T | undefined => (s === undefined ? undefined : (JSON.parse(s) as T));

export function parseRecord(h: Hash): TaskRecord {
  const state = h.state as State;
  if (!STATES.includes(state)) throw new Error(`task ${h.id} has an unknown state ${h.state}`);
  const rec: TaskRecord = {
    id: h.id ?? '',
    name: h.name ?? '',
    queue: h.queue ?? '',
    state,
    attempt: num(h.attempt) ?? 0,
    maxAttempts: num(h.max_attempts) ?? 1,
    version: num(h.version) ?? 0,
    createdAt: num(h.created) ?? 0,
    updatedAt: num(h.updated) ?? 0,
  };
  if (h.args !== undefined) rec.args = json(h.args);
  if (h.kwargs !== undefined) rec.kwargs = json(h.kwargs);
  if (h.result !== undefined) rec.result = json(h.result);
  if (h.err_type !== undefined) {
    rec.error = { type: h.err_type, message: h.err_msg ?? '' };
    if (h.err_tb) rec.error.traceback = h.err_tb;
  }
  if (h.progress !== undefined) rec.progress = json(h.progress);
  if (h.worker) rec.worker = h.worker;
  if (h.ekey) rec.exclusiveKey = h.ekey;
  if (h.ikey) rec.idempotencyKey = h.ikey;
  if (h.cancel === 'abort' || h.cancel === 'terminate') rec.cancel = h.cancel;
  if (h.cancel_reason) rec.cancelReason = h.cancel_reason;
  rec.startedAt = num(h.started);
  rec.finishedAt = num(h.finished);
  rec.notBefore = num(h.not_before);
  rec.expiresAt = num(h.expires);
  rec.nextAttemptAt = num(h.next_at);
  rec.timeLimitMs = num(h.time_limit);
  rec.initialBackoffMs = num(h.backoff_initial);
  rec.maxBackoffMs = num(h.backoff_max);
  if (h.retry_on) rec.retryOn = json(h.retry_on);
  if (h.traceparent) rec.traceparent = h.traceparent;
  if (h.parent) rec.parentId = h.parent;
  if (h.workflow) rec.workflow = true;
  if (h.schedule) rec.scheduleId = h.schedule;
  return rec;
}

/** What a worker needs of a task it runs (the fields attempt-4.lua's claims return, RUN_FIELDS). */
export interface RunnableTask {
  id: string;
  name: string;
  /** JSON text of the positional and keyword arguments, as stored (handed to the handler
   * thread as they are). */
  argsJson: string;
  kwargsJson: string;
  attempt: number;
  maxAttempts: number;
  timeLimitMs?: number;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  retryOn?: string[];
  traceparent?: string;
}

/** A claim's pairs [k1, v1, …] (a subset of the record's fields) to a RunnableTask. */
export function parseRunnable(id: string, flat: readonly string[]): RunnableTask {
  const h = pairsToHash(flat);
  return {
    id,
    name: h.name ?? '',
    argsJson: h.args ?? '[]',
    kwargsJson: h.kwargs ?? '{}',
    attempt: num(h.attempt) ?? 0,
    maxAttempts: num(h.max_attempts) ?? 1,
    timeLimitMs: num(h.time_limit),
    initialBackoffMs: num(h.backoff_initial),
    maxBackoffMs: num(h.backoff_max),
    retryOn: h.retry_on ? json(h.retry_on) : undefined,
    traceparent: h.traceparent || undefined,
  };
}

/** The hash fields of a new task, as name/value pairs for the enqueue script. */
export function newRecordFields(rec: TaskRecord): string[] {
  const out: string[] = [];
  const put = (k: string, v: string | number | undefined) => {
    if (v !== undefined && v !== '') out.push(k, String(v));
  };
  put('id', rec.id);
  put('name', rec.name);
  put('queue', rec.queue);
  put('state', rec.state);
  put('args', JSON.stringify(rec.args ?? []));
  put('kwargs', JSON.stringify(rec.kwargs ?? {}));
  put('attempt', rec.attempt);
  put('max_attempts', rec.maxAttempts);
  put('ekey', rec.exclusiveKey);
  put('ikey', rec.idempotencyKey);
  put('created', rec.createdAt);
  put('updated', rec.updatedAt);
  put('not_before', rec.notBefore);
  put('expires', rec.expiresAt);
  put('time_limit', rec.timeLimitMs);
  put('backoff_initial', rec.initialBackoffMs);
  put('backoff_max', rec.maxBackoffMs);
  if (rec.retryOn?.length) put('retry_on', JSON.stringify(rec.retryOn));
  put('traceparent', rec.traceparent);
  put('schedule', rec.scheduleId);
  return out;
}
