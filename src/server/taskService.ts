/**
 * taskwire.v1.TaskService: decode and check the request, call the domain, map errors.
 * No Redis command is issued here.
 *
 * One file, past the usual size: one method per RPC, each reading its request the same way;
 * the watches' machinery is apart (watchTask.ts, watchHub.ts, wholeRecords.ts).
 */
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { timestampMs, timestampNow } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from '@connectrpc/connect';
import { type QueueReaders, unreadQueueHint } from '../store/queueReaders.js';
import {
  CancelOutcome,
  CancelResponseSchema,
  GetStatusResponseSchema,
  HeartbeatSchema,
  ListTasksResponseSchema,
  RunResponseSchema,
  StartManyResponseSchema,
  StartWorkflowResponseSchema,
  StartResponseSchema,
  StartResultSchema,
  StartErrorSchema,
  type TaskService,
  WatchEventsResponseSchema,
  type WatchStatusResponseSchema,
} from '../../gen/taskwire/v1/task_service_pb.js';
import { invalid, TaskwireError } from '../errors.js';
import type { Logger } from '../log.js';
import type { TaskStore } from '../store/taskStore.js';
import { type Hash, parseRecord, type TaskRecord } from '../store/record.js';
import { childSpan, formatTraceparent, parseTraceparent, traceFields } from '../trace.js';
import { ErrorInfoSchema } from '../../gen/google/rpc/error_details_pb.js';
import { startInputFromWire, stateFromWire, taskToWire } from './convert.js';
import { detailsAsAny, toConnectError } from './errors.js';
import { Mailbox } from './mailbox.js';
import type { WatchHub } from './watchHub.js';
import { watchTask, type WatchDeps } from './watchTask.js';
import { WholeRecords } from './wholeRecords.js';
import { queueName, queueOf } from '../ids.js';
import { callEndOf, throwEndStatus } from './callEnd.js';
import { ConcurrencyLimit } from './concurrencyLimit.js';
import { isTerminal } from '../store/states.js';
import { stepFromWire } from './workflowWire.js';
import type { ScheduleStore } from '../beat/scheduleStore.js';
import { scheduleMethods } from './schedules.js';

export interface ServiceDeps {
  store: TaskStore;
  hub: WatchHub;
  log: Logger;
  watchHeartbeatMs: number;
  /** Events a WatchEvents consumer may fall behind before its stream is ended. */
  maxStreamBacklog: number;
  /** Called for each task a Start created (not for an idempotent repeat): metrics. */
  onStarted?: (task: TaskRecord) => void;
  /** Tells whether any worker has read a queue, for Start's hint when none has. */
  readers?: QueueReaders;
  /** Periodic schedules; without it the schedule RPCs answer UNIMPLEMENTED. */
  schedules?: ScheduleStore;
}

const OUTCOME = {
  revoked: [CancelOutcome.REVOKED, 'the task had not started; it is revoked and will not run'],
  requested: [CancelOutcome.REQUESTED, 'the task is running; its worker has been told to stop it'],
  finished: [CancelOutcome.ALREADY_FINISHED, 'the task had already finished; nothing changed'],
} as const;

const MAX_BATCH = 1000;

/** A response header with advice for the caller (the CLI prints it); the call succeeded. */
export const HINT_HEADER = 'taskwire-hint';

/** The event a quiet stream carries so that proxies keep it open. */
const heartbeat = () => ({ case: 'heartbeat' as const, value: create(HeartbeatSchema, { time: timestampNow() }) });

/** How far apart the clocks of the API servers may be: a queue added while a WatchEvents
 * is open is read from this long before the stream opened. */
const CLOCK_SKEW_MS = 30_000;

export function createTaskService({
  store,
  hub,
  log,
  watchHeartbeatMs,
  maxStreamBacklog,
  onStarted,
  readers,
  schedules,
}: ServiceDeps): ServiceImpl<typeof TaskService> {
  // Shared by every WatchStatus stream: a watcher allocates no closures of its own.
  // WatchStatus and Run stream the same messages (a task, or a heartbeat).
  const watchDeps: WatchDeps<MessageInitShape<typeof WatchStatusResponseSchema> & MessageInitShape<typeof RunResponseSchema>> = {
    store,
    hub,
    reads: new ConcurrencyLimit(256),
    heartbeatMs: watchHeartbeatMs,
    toWire: (item) => ({ event: 'task' in item ? { case: 'task', value: taskToWire(item.task) } : heartbeat() }),
    toError: (err) => toConnectError(err, log),
  };
  // The tasks of `queue` created since `since` (ms), oldest first, each as it is now; or
  // undefined when they could not be read.
  const createdSince = async (queue: string, since: number): Promise<TaskRecord[] | undefined> => {
    try {
      const out: TaskRecord[] = [];
      let pageToken = '';
      do {
        const page = await store.list({ queue, createdAfter: since, pageSize: 500, pageToken });
        out.push(...page.tasks);
        pageToken = page.nextPageToken;
      } while (pageToken);
      return out.reverse();
    } catch {
      return undefined;
    }
  };
  const guard = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      throw toConnectError(err, log);
    }
  };

  // The Start call is a span of the caller's trace (W3C traceparent header), or starts one;
  // the task record keeps it, so the worker's log lines for the task join the same trace.
  const started = async (req: Parameters<typeof startInputFromWire>[0], span: ReturnType<typeof childSpan>, signal: AbortSignal) => {
    const result = await store.start({ ...startInputFromWire(req), traceparent: formatTraceparent(span) }, signal);
    if (result.created) {
      onStarted?.(result.task);
      log.debug('task queued', { task_id: result.task.id, task: result.task.name, queue: result.task.queue, ...traceFields(span) });
    }
    return result;
  };

  // A task left on a queue no worker reads waits forever: say so in a response header.
  const hintIfUnread = async (task: TaskRecord, ctx: HandlerContext) => {
    if (readers && !isTerminal(task.state) && !(await readers.hasReader(task.queue))) {
      ctx.responseHeader.set(HINT_HEADER, unreadQueueHint(task.queue));
    }
  };

  return {
    start: (req, ctx) =>
      guard(async () => {
        const span = childSpan(parseTraceparent(ctx.requestHeader.get('traceparent')));
        const { task } = await started(req, span, ctx.signal);
        await hintIfUnread(task, ctx);
        return create(StartResponseSchema, { task: taskToWire(task) });
      }),

    startMany: (req, ctx) =>
      guard(async () => {
        if (req.requests.length > MAX_BATCH) {
          throw new TaskwireError('too_large', `at most ${MAX_BATCH} tasks per StartMany; got ${req.requests.length}`);
        }
        const span = childSpan(parseTraceparent(ctx.requestHeader.get('traceparent')));
        const results = await Promise.all(
          req.requests.map(async (r) => {
            try {
              const { task } = await started(r, span, ctx.signal);
              return create(StartResultSchema, { outcome: { case: 'task', value: taskToWire(task) } });
            } catch (err) {
              const ce = toConnectError(err, log);
              const info = ce.findDetails(ErrorInfoSchema)[0];
              return create(StartResultSchema, {
                outcome: {
                  case: 'error',
                  value: create(StartErrorSchema, {
                    code: ce.code,
                    message: ce.rawMessage,
                    existingTaskId: info?.metadata.running_task_id ?? '',
                    details: detailsAsAny(ce),
                  }),
                },
              });
            }
          }),
        );
        return create(StartManyResponseSchema, { results });
      }),

    getStatus: (req) =>
      guard(async () => {
        const id = await store.resolve({ id: req.id, exclusiveKey: req.exclusiveKey, queue: req.queue });
        const task = await store.get(id);
        if (task.workflow) task.children = await store.workflows.children(store.queueOf(task.id), task.id);
        return create(GetStatusResponseSchema, { task: taskToWire(task) });
      }),

    cancel: (req) =>
      guard(async () => {
        const id = await store.resolve({ id: req.id, exclusiveKey: req.exclusiveKey, queue: req.queue });
        const { outcome, task } = await store.cancel(id, req.terminate, req.reason || 'cancelled by request');
        const [code, message] = OUTCOME[outcome];
        return create(CancelResponseSchema, { task: taskToWire(task), outcome: code, message });
      }),

    watchStatus: (req, ctx) => {
      // Versions count a task's changes: one above 2^53 is no version, refused before Redis.
      if (req.afterVersion !== undefined && req.afterVersion > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw toConnectError(invalid('after_version', `must be at most ${Number.MAX_SAFE_INTEGER}, a version the watch has sent`));
      }
      return watchTask(
        watchDeps,
        { id: req.id, exclusiveKey: req.exclusiveKey, queue: req.queue },
        req.afterVersion === undefined ? undefined : Number(req.afterVersion),
        callEndOf(ctx),
      );
    },

    listTasks: (req) =>
      guard(async () => {
        const states = req.states.map((s) => stateFromWire(s)).filter((s) => s !== undefined);
        const page = await store.list({
          queue: req.queue || undefined,
          states,
          name: req.name || undefined,
          pageSize: req.pageSize,
          pageToken: req.pageToken,
          createdAfter: req.createdAfter ? timestampMs(req.createdAfter) : undefined,
        });
        return create(ListTasksResponseSchema, { tasks: page.tasks.map(taskToWire), nextPageToken: page.nextPageToken });
      }),

    async *watchEvents(req, ctx) {
      // WatchEvents has no log to re-read: a consumer that falls too far behind, or a
      // subscription that broke (events may have been missed), ends the stream with a status
      // that says so, never a silent gap. The caller resumes by opening a new WatchEvents
      // and reading ListTasks (created_after) for what changed meanwhile.
      const box = new Mailbox<ReturnType<typeof parseRecord>>();
      let ended: ConnectError | undefined;
      const endWith = (err: ConnectError) => {
        ended ??= err;
        box.drop();
        box.close();
      };
      const lost = () =>
        endWith(
          new ConnectError(
            "the server's Redis subscription was interrupted, so events may have been missed; open a new WatchEvents and read ListTasks for what changed meanwhile",
            Code.Unavailable,
          ),
        );
      const deliver = (rec: ReturnType<typeof parseRecord>) => {
        if (box.backlog >= maxStreamBacklog) {
          endWith(
            new ConnectError(
              `this WatchEvents consumer fell ${maxStreamBacklog} events behind (TASKWIRE_MAX_STREAM_BACKLOG); read faster, then open a new WatchEvents and read ListTasks for what changed meanwhile`,
              Code.ResourceExhausted,
            ),
          );
          return;
        }
        box.push(rec);
      };
      const openedAt = Date.now();
      // A queue added while this stream is open (WatchEvents of every queue): the tasks
      // created there so far are read and sent as they are, and the changes heard meanwhile
      // wait, so that each task's changes reach the stream in order and once.
      const filling = new Map<string, Hash[]>();
      /** Tasks sent from such a read, by id: the version sent (a change up to it was sent). */
      const sentAt = new Map<string, number>();
      const hear = (h: Hash) => {
        const held = filling.size && h.id !== undefined ? filling.get(queueOf(h.id) ?? '') : undefined;
        if (held) return void held.push(h);
        if (sentAt.size && h.id !== undefined) {
          const sent = sentAt.get(h.id);
          if (sent !== undefined) {
            if (Number(h.version) <= sent) return;
            sentAt.delete(h.id);
          }
        }
        try {
          deliver(parseRecord(h));
        } catch {
          // a malformed message is not a reason to end the stream
        }
      };
      // A change published may hold only the fields it wrote: the stream sends whole records.
      const whole = new WholeRecords((id) => store.getHash(id), hear);
      const feed = hub.feed(req.queue ? store.partitions.of(req.queue) : undefined, {
        change: (h) => whole.change(h),
        lost,
        added(queue, live) {
          const held: Hash[] = [];
          filling.set(queue, held);
          void live.then(
            () => fill(queue, held),
            () => filling.delete(queue),
          );
        },
      });
      const fill = (queue: string, held: Hash[]) =>
        void createdSince(queueName(queue), openedAt - CLOCK_SKEW_MS).then((records) => {
          filling.delete(queue);
          if (!records) return lost();
          // `queue` is one partition of a partitioned queue: the others' tasks are heard apart.
          for (const rec of records.filter((r) => queueOf(r.id) === queue)) {
            sentAt.set(rec.id, rec.version);
            deliver(rec);
          }
          for (const h of held) hear(h);
        });
      const end = callEndOf(ctx);
      end.add(box);
      try {
        await feed.live;
        for (;;) {
          const next = await box.next(watchHeartbeatMs);
          if ('closed' in next) {
            if (ended) throw ended;
            throwEndStatus(end);
            return;
          }
          yield create(WatchEventsResponseSchema, {
            event: 'item' in next ? { case: 'task', value: taskToWire(next.item) } : heartbeat(),
          });
        }
      } catch (err) {
        throw toConnectError(err, log);
      } finally {
        end.remove(box);
        feed.off();
      }
    },

    // Start, then the task's watch from the version Start left: the watch subscribes and
    // fills from the log whatever changed in between, so no version is missed. A repeat
    // of a finished task (same idempotency key) answers its terminal record alone.
    async *run(req, ctx) {
      const task = await guard(async () => {
        const span = childSpan(parseTraceparent(ctx.requestHeader.get('traceparent')));
        const { task } = await started(req, span, ctx.signal);
        await hintIfUnread(task, ctx);
        return task;
      });
      yield create(RunResponseSchema, { event: { case: 'task', value: taskToWire(task) } });
      if (isTerminal(task.state)) return;
      yield* watchTask(watchDeps, { id: task.id }, task.version, callEndOf(ctx));
    },

    // A workflow is a task record of its own: followed, cancelled and listed as a task is.
    startWorkflow: (req, ctx) =>
      guard(async () => {
        const span = childSpan(parseTraceparent(ctx.requestHeader.get('traceparent')));
        const { task, created } = await store.workflows.start(
          {
            root: stepFromWire(req.root),
            queue: req.queue || undefined,
            idempotencyKey: req.idempotencyKey || undefined,
            exclusiveKey: req.exclusiveKey || undefined,
            traceparent: formatTraceparent(span),
          },
          ctx.signal,
        );
        if (created) {
          onStarted?.(task);
          log.debug('workflow started', { task_id: task.id, queue: task.queue, ...traceFields(span) });
        }
        task.children = await store.workflows.children(store.queueOf(task.id), task.id);
        return create(StartWorkflowResponseSchema, { task: taskToWire(task) });
      }),
    ...(schedules
      ? scheduleMethods(schedules, guard, async (queue, ctx) => {
          if (readers && !(await readers.hasReader(queue))) ctx.responseHeader.set(HINT_HEADER, unreadQueueHint(queue));
        })
      : {
          createSchedule: notYet('CreateSchedule'),
          getSchedule: notYet('GetSchedule'),
          listSchedules: notYet('ListSchedules'),
          deleteSchedule: notYet('DeleteSchedule'),
          pauseSchedule: notYet('PauseSchedule'),
          resumeSchedule: notYet('ResumeSchedule'),
        }),
  };
}

function notYet(method: string): () => never {
  return () => {
    throw new ConnectError(`${method} is not served by this server yet`, Code.Unimplemented);
  };
}
