/**
 * The TypeScript client (Connect's client API over gRPC/HTTP2), importable as `taskwire/client`:
 * start, status, cancel, watch (resumes by itself after a dropped stream, from the last
 * version it saw), wait, and run (start and watch in one call; `start(…, { wait: true })`).
 *
 *   import { createTaskwireClient } from 'taskwire/client';
 *   import { hello } from './tasks.js';                    // defineTask<[name?: string], {}, string>(…)
 *
 *   const tw = createTaskwireClient({ baseUrl: 'http://127.0.0.1:50051' });
 *   const task = await tw.start(hello, { args: ['Lucy'] }); // args checked against hello's
 *   const greeting = await tw.wait(task);                  // string: "Hello Lucy!"
 *
 * One file, past the usual size: TaskwireClient is the client's whole surface (each method one
 * RPC with its conveniences), and a reader finds it in one place; the transport, the start
 * batcher and the workflow builders live beside it.
 *
 * A task name works too (`tw.start('hello', …)`), untyped: its result is a JsonValue.
 */
import { create, fromJson, toJson, type MessageInitShape } from '@bufbuild/protobuf';
import { durationFromMs, ListValueSchema, timestampFromMs, ValueSchema } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from '@connectrpc/connect';
import { TaskState, type Task } from '../../gen/taskwire/v1/task_pb.js';
import { CancelOutcome, OverlapPolicy, StartRequestSchema, TaskService, type Schedule } from '../../gen/taskwire/v1/task_service_pb.js';
import { clientDefaults } from '../config.js';
import type { JsonObject, JsonValue } from '../json.js';
import type { TaskArgs, TaskDefinition, TaskKwargs } from '../tasks/define.js';
import { createTaskwireTransport } from './grpcTransport.js';
import { StartBatcher } from './startBatcher.js';
import { type Canvas, canvasBuilders, setClientClass, startWorkflow, type WorkflowOptions } from './workflow.js';

export { TaskState, CancelOutcome, OverlapPolicy, Code, ConnectError, createTaskwireTransport };
export type { Task, Schedule, JsonValue, JsonObject };
export type { TaskwireTransport, TaskwireTransportOptions } from './grpcTransport.js';
export { chain, chord, group, sig, signature, Chain, Chord, Group, Signature } from './workflow.js';
export type { Canvas, SignatureOptions, WorkflowOptions } from './workflow.js';

export interface ClientOptions {
  /** e.g. http://127.0.0.1:50051, or https://… for a server with TLS (default: TASKWIRE_SERVER). */
  baseUrl?: string;
  /** Bearer token sent with every call (default: TASKWIRE_TOKEN, if set). */
  token?: string;
  /** For https: the CA certificate(s) to trust besides the system's (PEM). */
  ca?: string | Buffer;
  /** A transport of your own (then baseUrl, token and ca are not used). */
  transport?: Transport;
  /**
   * Send the `start()` calls made within one turn of the event loop as one StartMany RPC
   * (default true). Each call still gets its own task or its own error; a lone call is a
   * plain Start. Calls with a `traceparent` always go alone.
   */
  batchStarts?: boolean;
  /**
   * gzip messages of 1 KiB and more, and ask for replies so (default false: a task queue's
   * API is usually near, where compressing costs more CPU on both ends than the bytes it
   * saves).
   */
  compress?: boolean;
  /**
   * While a call is open, ping the server this often (default 30 s) and drop the connection
   * when a ping is not answered in `keepaliveTimeoutMs` (default 10 s): a connection that
   * died silently fails its calls (a watch resumes on a new one) instead of hanging.
   */
  keepaliveMs?: number;
  keepaliveTimeoutMs?: number;
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
  /** The wait before the second attempt (doubles each attempt, with jitter); default: the task's. */
  initialBackoffMs?: number;
  /** The longest wait between attempts; default: the task's. */
  maxBackoffMs?: number;
  /** W3C trace context of the caller: the task's logs join this trace. */
  traceparent?: string;
  /**
   * Resolve with the task's terminal record (SUCCESS, FAILURE or REVOKED) instead of the
   * queued one: one Run call starts the task and streams it to its end.
   */
  wait?: boolean;
  /** With `wait` (and for `run`): the call's deadline; past it the call fails with DEADLINE_EXCEEDED. */
  timeoutMs?: number;
  /** With `wait` (and for `run`): aborting ends the call with CANCELED. */
  signal?: AbortSignal;
  /** Told the server's advice on this start, such as that no worker has read its queue yet
   * (a start with `onHint` is sent alone, not batched). */
  onHint?: (hint: string) => void;
}

const hintListener = (onHint: StartOptions['onHint']) =>
  onHint &&
  ((header: Headers) => {
    const hint = header.get('taskwire-hint');
    if (hint) onHint(hint);
  });

/** Start options for a task definition: args and kwargs of its own types. */
export type TypedStartOptions<A extends TaskArgs, K extends TaskKwargs> = Omit<StartOptions, 'args' | 'kwargs'> &
  ([] extends A ? { args?: A } : { args: A }) &
  // biome-ignore lint/complexity/noBannedTypes: `{} extends K` asks whether every key of K is optional
  ({} extends K ? { kwargs?: K } : { kwargs: K });

declare const RESULT: unique symbol;
/** A task record that remembers the type of its result, for `wait` and `resultOf`. */
export type TypedTask<R> = Task & { readonly [RESULT]?: R };

/** A periodic schedule to create: when it ticks, and the task each tick starts. */
export interface ScheduleOptions
  extends Pick<
    StartOptions,
    'args' | 'kwargs' | 'queue' | 'countdownMs' | 'timeLimitMs' | 'maxAttempts' | 'retryOn' | 'initialBackoffMs' | 'maxBackoffMs'
  > {
  /** A period (at least 1000 ms); ticks fall on its multiples since the Unix epoch. */
  everyMs?: number;
  /** Cron: 5 fields, or 6 with seconds first. */
  cron?: string;
  /** IANA time zone name for cron (default UTC). */
  timezone?: string;
  /** 'skip' (default): no run while the previous one has not finished; 'allow': overlap. */
  overlap?: 'allow' | 'skip';
  paused?: boolean;
  /** Replace a schedule with the same id instead of failing with ALREADY_EXISTS. */
  replace?: boolean;
  /** Told the server's advice, such as that no worker has read the schedule's queue yet. */
  onHint?: (hint: string) => void;
}

export interface TaskRef {
  id?: string;
  exclusiveKey?: string;
  queue?: string;
}

export interface WatchOptions {
  signal?: AbortSignal;
  /** Reconnects in a row without any message before giving up (default 20). */
  maxRetries?: number;
  /** Resume after this version (what a previous watch saw last). */
  afterVersion?: bigint | number;
  /**
   * A stream that carries no message (a change or the server's heartbeat, sent every 5 s by
   * default) for this long is given up and resumed on a new one, as a dropped stream is
   * (default 30 s; 0 turns it off). Set it above the server's TASKWIRE_WATCH_HEARTBEAT.
   */
  heartbeatTimeoutMs?: number;
  /** Told of each dropped stream before the watch resumes. */
  onRetry?: (error: ConnectError, attempt: number, afterVersion: bigint | undefined) => void;
}

/** A task that ended in FAILURE or REVOKED, as `wait` rejects. */
export class TaskFailedError extends Error {
  override readonly name = 'TaskFailedError';
  /** 'FAILURE' or 'REVOKED'. */
  readonly state: string;
  /** The task's error type ("ValueError", "TimeLimitExceeded", "TaskRevokedError", …). */
  readonly errorType: string;
  readonly errorMessage: string;
  readonly traceback: string;

  constructor(readonly task: Task) {
    super(`task ${task.id} ended ${TaskState[task.state]}: ${task.error?.type ?? ''}: ${task.error?.message ?? ''}`);
    this.state = TaskState[task.state] ?? 'UNSPECIFIED';
    this.errorType = task.error?.type ?? '';
    this.errorMessage = task.error?.message ?? '';
    this.traceback = task.error?.traceback ?? '';
  }
}

export const TERMINAL = new Set([TaskState.SUCCESS, TaskState.FAILURE, TaskState.REVOKED]);

/** The handler's return value as plain JSON. */
export function resultOf<R = JsonValue>(task: TypedTask<R>): R | undefined {
  return task.result ? (toJson(ValueSchema, task.result) as R) : undefined;
}

export function argsOf(task: Task): JsonValue[] {
  return task.args ? (toJson(ListValueSchema, task.args) as JsonValue[]) : [];
}

/** Only what names a task: an id, or (without one) the latest task for a key on a queue. */
const ref = (r: string | TaskRef | undefined): TaskRef => {
  if (typeof r === 'string') return { id: r };
  if (r?.id) return { id: r.id };
  return { exclusiveKey: r?.exclusiveKey ?? '', queue: r?.queue ?? '' };
};

/** Why a watch's own signal aborts when the watch is over (a reason given: no DOMException built). */
const WATCH_LEFT = new ConnectError('the watch is over', Code.Canceled);

/**
 * Aborts one watch stream when nothing arrives on it for `timeoutMs`: a server that stopped
 * sending (a stuck process behind a live connection) cannot hang a watch.
 */
class SilenceWatchdog {
  readonly signal: AbortSignal;
  /** Why the stream was given up, once it was. */
  fired?: ConnectError;
  private readonly ctl = new AbortController();
  private readonly timer?: NodeJS.Timeout;

  constructor(parent: AbortSignal, timeoutMs: number) {
    this.signal = timeoutMs > 0 ? AbortSignal.any([parent, this.ctl.signal]) : parent;
    if (timeoutMs <= 0) return;
    this.timer = setTimeout(() => {
      this.fired = new ConnectError(`no message or heartbeat from the server in ${timeoutMs} ms (heartbeatTimeoutMs)`, Code.Unavailable);
      this.ctl.abort(this.fired);
    }, timeoutMs);
    this.timer.unref();
  }

  heard(): void {
    this.timer?.refresh();
  }

  stop(): void {
    clearTimeout(this.timer);
  }
}

/** Codes after which the same watch may succeed on a new stream. CANCELED is among them:
 * a server shutting down resets its streams with CANCEL (our own abort is checked apart). */
const TRANSIENT = new Set([Code.Unavailable, Code.Internal, Code.Unknown, Code.DeadlineExceeded, Code.Aborted, Code.Canceled]);

const jsonList = (args: readonly (JsonValue | undefined)[]) => args.map((a) => (a === undefined ? null : a));
const jsonObject = (kwargs: Record<string, JsonValue | undefined>): JsonObject =>
  Object.fromEntries(Object.entries(kwargs).filter(([, v]) => v !== undefined)) as JsonObject;

/** About how many bytes a start request takes encoded: its JSON payload, doubled (protobuf's
 * Struct is larger than JSON for small values), plus the rest. Only bounds batch sizes. */
function estimatedSize(o: StartOptions): number {
  const payload = (o.args?.length ? JSON.stringify(o.args).length : 0) + (o.kwargs ? JSON.stringify(o.kwargs).length : 0);
  return 2 * payload + 256;
}

export class TaskwireClient {
  readonly rpc: Client<typeof TaskService>;
  private readonly batcher?: StartBatcher;

  constructor(options: ClientOptions = {}) {
    let transport = options.transport;
    if (!transport) {
      const defaults = clientDefaults();
      const token = options.token ?? defaults.token;
      const bearer: Interceptor = (next) => (req) => {
        req.header.set('authorization', `Bearer ${token}`);
        return next(req);
      };
      const common = {
        baseUrl: options.baseUrl ?? defaults.server,
        interceptors: token ? [bearer] : [],
        nodeOptions: options.ca ? { ca: options.ca } : undefined,
      };
      const keepaliveMs = options.keepaliveMs ?? 30_000;
      const keepaliveTimeoutMs = options.keepaliveTimeoutMs ?? 10_000;
      transport = createTaskwireTransport({ ...common, keepaliveMs, keepaliveTimeoutMs, compress: options.compress });
    }
    this.rpc = createClient(TaskService, transport);
    if (options.batchStarts ?? true) this.batcher = new StartBatcher(this.rpc);
    const builders = canvasBuilders(this);
    this.sig = builders.sig;
    this.signature = builders.signature;
    this.chain = builders.chain;
    this.group = builders.group;
    this.chord = builders.chord;
  }

  /** Workflow builders (Celery's canvas); `.start()` on what they build starts the workflow. */
  readonly sig: ReturnType<typeof canvasBuilders>['sig'];
  readonly signature: ReturnType<typeof canvasBuilders>['signature'];
  readonly chain: ReturnType<typeof canvasBuilders>['chain'];
  readonly group: ReturnType<typeof canvasBuilders>['group'];
  readonly chord: ReturnType<typeof canvasBuilders>['chord'];

  /** Start a workflow (a canvas built with or without a client); resolves with its own record. */
  startWorkflow(root: Canvas, options: WorkflowOptions = {}): Promise<Task> {
    return startWorkflow(this, root, options);
  }

  static startRequest(name: string, o: StartOptions = {}): MessageInitShape<typeof StartRequestSchema> {
    return {
      name,
      args: fromJson(ListValueSchema, jsonList(o.args ?? [])),
      kwargs: o.kwargs ? jsonObject(o.kwargs) : undefined,
      queue: o.queue,
      exclusiveKey: o.exclusiveKey,
      idempotencyKey: o.idempotencyKey,
      countdown: o.countdownMs !== undefined ? durationFromMs(o.countdownMs) : undefined,
      notBefore: o.notBefore ? timestampFromMs(o.notBefore.getTime()) : undefined,
      expiresAt: o.expiresAt ? timestampFromMs(o.expiresAt.getTime()) : undefined,
      timeLimit: o.timeLimitMs !== undefined ? durationFromMs(o.timeLimitMs) : undefined,
      retry:
        o.maxAttempts || o.retryOn || o.initialBackoffMs !== undefined || o.maxBackoffMs !== undefined
          ? {
              maxAttempts: o.maxAttempts ?? 0,
              retryOn: o.retryOn ?? [],
              initialBackoff: o.initialBackoffMs !== undefined ? durationFromMs(o.initialBackoffMs) : undefined,
              maxBackoff: o.maxBackoffMs !== undefined ? durationFromMs(o.maxBackoffMs) : undefined,
            }
          : undefined,
    };
  }

  /** Queue a task given its definition: args, kwargs and the result are typed from it. */
  start<A extends TaskArgs, K extends TaskKwargs, R>(
    task: TaskDefinition<A, K, R>,
    // biome-ignore lint/complexity/noBannedTypes: `{} extends K` asks whether every key of K is optional
    ...options: [] extends A ? ({} extends K ? [TypedStartOptions<A, K>?] : [TypedStartOptions<A, K>]) : [TypedStartOptions<A, K>]
  ): Promise<TypedTask<Awaited<R>>>;
  /** Queue a task by name. */
  start(name: string, options?: StartOptions): Promise<TypedTask<JsonValue | undefined>>;
  async start(task: string | TaskDefinition<any, any, any>, options: StartOptions = {}): Promise<Task> {
    const name = typeof task === 'string' ? task : task.name;
    if (options.wait) {
      let last: Task | undefined;
      for await (const t of this.run(name, options)) last = t;
      return last!;
    }
    const request = create(StartRequestSchema, TaskwireClient.startRequest(name, options));
    if (this.batcher && !options.traceparent && !options.onHint) return this.batcher.start(request, estimatedSize(options));
    const headers = options.traceparent ? { traceparent: options.traceparent } : undefined;
    return (await this.rpc.start(request, { headers, onHeader: hintListener(options.onHint) })).task!;
  }

  /**
   * Start a task and stream its record until its terminal state, over one Run call: the
   * record as Start left it first, then each change, the terminal one last. Should the
   * stream drop once the task is queued, the rest is read by `watch` from the last version
   * seen. `timeoutMs` and `signal` bound the whole.
   */
  run<A extends TaskArgs, K extends TaskKwargs, R>(
    task: TaskDefinition<A, K, R>,
    // biome-ignore lint/complexity/noBannedTypes: `{} extends K` asks whether every key of K is optional
    ...options: [] extends A ? ({} extends K ? [TypedStartOptions<A, K>?] : [TypedStartOptions<A, K>]) : [TypedStartOptions<A, K>]
  ): AsyncGenerator<TypedTask<Awaited<R>>>;
  run(name: string, options?: StartOptions): AsyncGenerator<TypedTask<JsonValue | undefined>>;
  async *run(task: string | TaskDefinition<any, any, any>, options: StartOptions = {}): AsyncGenerator<Task> {
    const name = typeof task === 'string' ? task : task.name;
    const request = create(StartRequestSchema, TaskwireClient.startRequest(name, options));
    const headers = options.traceparent ? { traceparent: options.traceparent } : undefined;
    // As in `watch`: Connect's stream iterators ignore return(), so a run left early ends
    // its stream through a signal of its own.
    const own = new AbortController();
    const forward = () => own.abort(options.signal!.reason);
    if (options.signal?.aborted) forward();
    options.signal?.addEventListener('abort', forward);
    const deadline = options.timeoutMs === undefined ? undefined : Date.now() + options.timeoutMs;
    let last: Task | undefined;
    let ended = false;
    try {
      try {
        for await (const msg of this.rpc.run(request, {
          headers,
          signal: own.signal,
          timeoutMs: options.timeoutMs,
          onHeader: hintListener(options.onHint),
        })) {
          if (ended || msg.event.case !== 'task') continue;
          last = msg.event.value;
          yield last;
          // Read on to the server's end of the stream rather than reset it (see `watch`).
          ended = TERMINAL.has(last.state);
        }
      } catch (err) {
        const error = ConnectError.from(err);
        if (ended) return;
        if (!last || options.signal?.aborted || error.code === Code.DeadlineExceeded || !TRANSIENT.has(error.code)) throw error;
      }
      if (ended) return;
      if (!last) throw new ConnectError('the Run stream ended before the task was started', Code.Unavailable);
      const rest = new AbortController();
      const left = deadline === undefined ? undefined : deadline - Date.now();
      const timer =
        left === undefined
          ? undefined
          : setTimeout(() => rest.abort(new ConnectError("the run's deadline passed", Code.DeadlineExceeded)), Math.max(0, left));
      const stop = () => rest.abort(own.signal.reason);
      own.signal.addEventListener('abort', stop);
      try {
        yield* this.watch(last.id, { afterVersion: last.version, signal: rest.signal });
      } finally {
        clearTimeout(timer);
        own.signal.removeEventListener('abort', stop);
      }
    } finally {
      options.signal?.removeEventListener('abort', forward);
      own.abort(WATCH_LEFT);
    }
  }

  async status<R = JsonValue>(task?: string | TaskRef | TypedTask<R>): Promise<TypedTask<R>> {
    return (await this.rpc.getStatus(ref(task))).task!;
  }

  async cancel(task?: string | TaskRef, options: { terminate?: boolean; reason?: string } = {}) {
    return this.rpc.cancel({ ...ref(task), terminate: options.terminate ?? false, reason: options.reason ?? '' });
  }

  /**
   * The task's record, then each change, ending after a terminal state. A dropped stream
   * (server restarted, connection lost, stream ended early) is resumed from the last
   * version seen, so every version is seen exactly once, in order.
   */
  /** Create a periodic schedule `id` that starts `task` on each tick. */
  async createSchedule(id: string, task: string | TaskDefinition<any, any, any>, options: ScheduleOptions): Promise<Schedule> {
    const name = typeof task === 'string' ? task : task.name;
    const overlap = { allow: OverlapPolicy.ALLOW, skip: OverlapPolicy.SKIP, '': OverlapPolicy.UNSPECIFIED }[options.overlap ?? ''];
    const res = await this.rpc.createSchedule(
      {
        schedule: {
          id,
          when:
            options.everyMs !== undefined
              ? { case: 'every', value: durationFromMs(options.everyMs) }
              : options.cron !== undefined
                ? { case: 'cron', value: options.cron }
                : { case: undefined },
          task: TaskwireClient.startRequest(name, options),
          timezone: options.timezone,
          overlap,
          paused: options.paused,
        },
        replace: options.replace ?? false,
      },
      { onHeader: hintListener(options.onHint) },
    );
    return res.schedule!;
  }

  async getSchedule(id: string): Promise<Schedule> {
    return (await this.rpc.getSchedule({ id })).schedule!;
  }

  async listSchedules(): Promise<Schedule[]> {
    return (await this.rpc.listSchedules({})).schedules;
  }

  /** When this resolves, the schedule starts no more runs. */
  async deleteSchedule(id: string): Promise<void> {
    await this.rpc.deleteSchedule({ id });
  }

  async pauseSchedule(id: string): Promise<Schedule> {
    return (await this.rpc.pauseSchedule({ id })).schedule!;
  }

  /** Resumes on the grid, from the next tick after now. */
  async resumeSchedule(id: string): Promise<Schedule> {
    return (await this.rpc.resumeSchedule({ id })).schedule!;
  }

  async *watch<R = JsonValue>(task?: string | TaskRef | TypedTask<R>, options: WatchOptions = {}): AsyncGenerator<TypedTask<R>> {
    // Connect's stream iterators ignore return(): a watch left early (a `break`) ends its
    // stream through a signal of its own, or the stream (and the process) would stay open.
    const own = new AbortController();
    const signal = own.signal;
    const forward = () => own.abort(options.signal!.reason);
    if (options.signal?.aborted) forward();
    options.signal?.addEventListener('abort', forward);
    const r = ref(task);
    let id = r.id;
    let after = options.afterVersion === undefined ? undefined : BigInt(options.afterVersion);
    let failures = 0;
    try {
      for (;;) {
        let error: ConnectError;
        /** The terminal version was delivered: the rest of the stream is only its end. */
        let ended = false;
        const silence = new SilenceWatchdog(signal, options.heartbeatTimeoutMs ?? 30_000);
        try {
          const stream = this.rpc.watchStatus({ ...r, id: id ?? '', afterVersion: after }, { signal: silence.signal });
          for await (const msg of stream) {
            silence.heard();
            if (ended || msg.event.case !== 'task') continue;
            const t = msg.event.value;
            if (after !== undefined && t.version <= after) continue; // never twice, whatever a server sends
            id = t.id;
            after = t.version;
            failures = 0;
            yield t;
            // The server ends the stream right after a terminal version: read on to that end
            // rather than leave at once. Leaving resets the stream (RST_STREAM), and a server
            // that sees a client reset ~1,000 streams in a burst ends its connection (nghttp2's
            // rapid-reset guard: GOAWAY with INTERNAL_ERROR), failing every call on it.
            ended = TERMINAL.has(t.state);
          }
          if (ended) return;
          // A stream ends early when resumed after the final version (done), or when it was cut
          // short (a server shutting down): the record tells which.
          const now = (await this.rpc.getStatus(id ? { id } : r, { signal })).task!;
          if (TERMINAL.has(now.state) && after !== undefined && now.version <= after) return;
          error = new ConnectError('the watch stream ended before the task finished', Code.Unavailable);
        } catch (err) {
          if (ended) return; // the watch was complete; how its stream ended does not matter
          error = silence.fired ?? ConnectError.from(err);
          if (options.signal?.aborted || !TRANSIENT.has(error.code)) throw error;
        } finally {
          silence.stop();
        }
        if (++failures > (options.maxRetries ?? 20)) throw error;
        options.onRetry?.(error, failures, after);
        await new Promise((res) => setTimeout(res, Math.min(100 * 2 ** (failures - 1), 2000)));
        if (options.signal?.aborted) throw ConnectError.from(options.signal.reason);
      }
    } finally {
      options.signal?.removeEventListener('abort', forward);
      own.abort(WATCH_LEFT);
    }
  }

  /** Resolves with the task's result on SUCCESS; rejects with TaskFailedError on FAILURE or REVOKED. */
  wait<R>(task: TypedTask<R>, options?: WatchOptions): Promise<R>;
  wait(task?: string | TaskRef, options?: WatchOptions): Promise<JsonValue | undefined>;
  async wait(task?: string | TaskRef | Task, options: WatchOptions = {}): Promise<unknown> {
    let last: Task | undefined;
    for await (const t of this.watch(task as TaskRef, options)) last = t;
    if (!last) throw new Error('the watch ended without a task');
    if (last.state !== TaskState.SUCCESS) throw new TaskFailedError(last);
    return resultOf(last);
  }
}

setClientClass(TaskwireClient);

export function createTaskwireClient(options: ClientOptions = {}): TaskwireClient {
  return new TaskwireClient(options);
}
