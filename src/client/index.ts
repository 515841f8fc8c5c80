/**
 * The TypeScript client (Connect over gRPC/HTTP2): start, status, cancel, watch (resumes by
 * itself after a dropped stream, from the last version it saw) and wait.
 *
 *   const tw = createTaskwireClient({ baseUrl: 'http://127.0.0.1:50051' });
 *   const task = await tw.start('hello', { args: ['Lucy'] });
 *   const result = await tw.wait(task.id);   // "Hello Lucy!"
 */
import { create, fromJson, toJson, type MessageInitShape } from '@bufbuild/protobuf';
import { durationFromMs, ListValueSchema, timestampFromMs, ValueSchema } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, createClient, type Client, type Transport } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { TaskState, type Task } from '../../gen/taskwire/v1/task_pb.js';
import { CancelOutcome, StartRequestSchema, TaskService } from '../../gen/taskwire/v1/task_service_pb.js';
import type { JsonObject, JsonValue } from '../json.js';

export { TaskState, CancelOutcome, Code, ConnectError };
export type { Task };

export interface ClientOptions {
  /** e.g. http://127.0.0.1:50051 */
  baseUrl?: string;
  transport?: Transport;
}

export interface StartOptions {
  args?: JsonValue[];
  kwargs?: JsonObject;
  queue?: string;
  exclusiveKey?: string;
  idempotencyKey?: string;
  countdownMs?: number;
  notBefore?: Date;
  expiresAt?: Date;
  timeLimitMs?: number;
  maxAttempts?: number;
  retryOn?: string[];
}

export interface TaskRef {
  id?: string;
  exclusiveKey?: string;
  queue?: string;
}

export class TaskFailedError extends Error {
  override readonly name = 'TaskFailedError';
  constructor(readonly task: Task) {
    super(`task ${task.id} ended ${TaskState[task.state]}: ${task.error?.type ?? ''}: ${task.error?.message ?? ''}`);
  }
}

export const TERMINAL = new Set([TaskState.SUCCESS, TaskState.FAILURE, TaskState.REVOKED]);

/** The handler's return value as plain JSON. */
export function resultOf(task: Task): JsonValue | undefined {
  return task.result ? (toJson(ValueSchema, task.result) as JsonValue) : undefined;
}

export function argsOf(task: Task): JsonValue[] {
  return task.args ? (toJson(ListValueSchema, task.args) as JsonValue[]) : [];
}

const ref = (r: string | TaskRef | undefined): TaskRef => (typeof r === 'string' ? { id: r } : (r ?? {}));

export class TaskwireClient {
  readonly rpc: Client<typeof TaskService>;

  constructor(options: ClientOptions = {}) {
    const transport =
      options.transport ??
      createGrpcTransport({ baseUrl: options.baseUrl ?? process.env.TASKWIRE_SERVER ?? 'http://127.0.0.1:50051' });
    this.rpc = createClient(TaskService, transport);
  }

  static startRequest(name: string, o: StartOptions = {}): MessageInitShape<typeof StartRequestSchema> {
    return {
      name,
      args: fromJson(ListValueSchema, o.args ?? []),
      kwargs: o.kwargs,
      queue: o.queue,
      exclusiveKey: o.exclusiveKey,
      idempotencyKey: o.idempotencyKey,
      countdown: o.countdownMs !== undefined ? durationFromMs(o.countdownMs) : undefined,
      notBefore: o.notBefore ? timestampFromMs(o.notBefore.getTime()) : undefined,
      expiresAt: o.expiresAt ? timestampFromMs(o.expiresAt.getTime()) : undefined,
      timeLimit: o.timeLimitMs !== undefined ? durationFromMs(o.timeLimitMs) : undefined,
      retry: o.maxAttempts || o.retryOn ? { maxAttempts: o.maxAttempts ?? 0, retryOn: o.retryOn ?? [] } : undefined,
    };
  }

  async start(name: string, options: StartOptions = {}): Promise<Task> {
    const res = await this.rpc.start(create(StartRequestSchema, TaskwireClient.startRequest(name, options)));
    return res.task!;
  }

  async status(task?: string | TaskRef): Promise<Task> {
    return (await this.rpc.getStatus(ref(task))).task!;
  }

  async cancel(task?: string | TaskRef, options: { terminate?: boolean; reason?: string } = {}) {
    return this.rpc.cancel({ ...ref(task), terminate: options.terminate ?? false, reason: options.reason ?? '' });
  }

  /**
   * The task's record, then each change, ending after a terminal state. A dropped stream
   * is resumed from the last version seen, so no change is missed or repeated.
   */
  async *watch(
    task?: string | TaskRef,
    options: { signal?: AbortSignal; maxRetries?: number; afterVersion?: bigint | number } = {},
  ): AsyncGenerator<Task> {
    const r = ref(task);
    let id = r.id;
    let after = options.afterVersion === undefined ? undefined : BigInt(options.afterVersion);
    let failures = 0;
    for (;;) {
      try {
        for await (const msg of this.rpc.watchStatus({ ...r, id: id ?? '', afterVersion: after }, { signal: options.signal })) {
          if (msg.event.case !== 'task') continue;
          const t = msg.event.value;
          id = t.id;
          after = t.version;
          failures = 0;
          yield t;
          if (TERMINAL.has(t.state)) return;
        }
        return;
      } catch (err) {
        const ce = ConnectError.from(err);
        const transient = ce.code === Code.Unavailable || ce.code === Code.Internal || ce.code === Code.Unknown || ce.code === Code.DeadlineExceeded;
        if (options.signal?.aborted || !transient || ++failures > (options.maxRetries ?? 20)) throw ce;
        await new Promise((res) => setTimeout(res, Math.min(100 * 2 ** failures, 2000)));
      }
    }
  }

  /** Resolves with the task's result on SUCCESS; rejects with TaskFailedError otherwise. */
  async wait(task?: string | TaskRef, options: { signal?: AbortSignal } = {}): Promise<JsonValue | undefined> {
    let last: Task | undefined;
    for await (const t of this.watch(task, options)) last = t;
    if (!last) throw new Error('the watch ended without a task');
    if (last.state !== TaskState.SUCCESS) throw new TaskFailedError(last);
    return resultOf(last);
  }
}

export function createTaskwireClient(options: ClientOptions = {}): TaskwireClient {
  return new TaskwireClient(options);
}
