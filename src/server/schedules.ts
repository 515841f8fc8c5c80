/** The schedule RPCs of taskwire.v1.TaskService, and the Schedule message ↔ the domain. */
import { create, fromJson } from '@bufbuild/protobuf';
import { durationFromMs, durationMs, ListValueSchema, timestampFromMs } from '@bufbuild/protobuf/wkt';
import {
  CreateScheduleResponseSchema,
  DeleteScheduleResponseSchema,
  GetScheduleResponseSchema,
  ListSchedulesResponseSchema,
  OverlapPolicy,
  PauseScheduleResponseSchema,
  ResumeScheduleResponseSchema,
  ScheduleSchema,
  StartRequestSchema,
  type Schedule as WireSchedule,
  type TaskService,
} from '../../gen/taskwire/v1/task_service_pb.js';
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import type { Schedule, ScheduleSpec, ScheduleStore } from '../beat/scheduleStore.js';
import { invalid } from '../errors.js';
import { startInputFromWire } from './convert.js';

type Guard = <T>(fn: () => Promise<T>) => Promise<T>;
type ScheduleMethods = Pick<
  ServiceImpl<typeof TaskService>,
  'createSchedule' | 'getSchedule' | 'listSchedules' | 'deleteSchedule' | 'pauseSchedule' | 'resumeSchedule'
>;

/** `hint`: tells the caller, in a response header, when no worker reads the schedule's queue. */
export function scheduleMethods(
  schedules: ScheduleStore,
  guard: Guard,
  hint?: (queue: string, ctx: HandlerContext) => Promise<void>,
): ScheduleMethods {
  return {
    createSchedule: (req, ctx) =>
      guard(async () => {
        if (!req.schedule) throw invalid('schedule', 'is required');
        const { schedule } = await schedules.put(scheduleFromWire(req.schedule), { replace: req.replace });
        await hint?.(schedule.queue, ctx);
        return create(CreateScheduleResponseSchema, { schedule: scheduleToWire(schedule) });
      }),
    getSchedule: (req) => guard(async () => create(GetScheduleResponseSchema, { schedule: scheduleToWire(await schedules.get(req.id)) })),
    listSchedules: () => guard(async () => create(ListSchedulesResponseSchema, { schedules: (await schedules.list()).map(scheduleToWire) })),
    deleteSchedule: (req) =>
      guard(async () => {
        await schedules.delete(req.id);
        return create(DeleteScheduleResponseSchema, {});
      }),
    pauseSchedule: (req) => guard(async () => create(PauseScheduleResponseSchema, { schedule: scheduleToWire(await schedules.pause(req.id)) })),
    resumeSchedule: (req) => guard(async () => create(ResumeScheduleResponseSchema, { schedule: scheduleToWire(await schedules.resume(req.id)) })),
  };
}

const OVERLAP: Record<OverlapPolicy, ScheduleSpec['overlap']> = {
  [OverlapPolicy.UNSPECIFIED]: undefined,
  [OverlapPolicy.ALLOW]: 'allow',
  [OverlapPolicy.SKIP]: 'skip',
};

export function scheduleFromWire(s: WireSchedule): ScheduleSpec {
  if (!s.task) throw invalid('schedule.task', 'is required: the task each tick starts');
  if (!(s.overlap in OVERLAP)) throw invalid('schedule.overlap', `${s.overlap} is not an overlap policy`);
  return {
    id: s.id,
    everyMs: s.when.case === 'every' ? durationMs(s.when.value) : undefined,
    cron: s.when.case === 'cron' ? s.when.value : undefined,
    timezone: s.timezone || undefined,
    overlap: OVERLAP[s.overlap],
    paused: s.paused,
    task: startInputFromWire(s.task),
  };
}

const ts = (ms: number | undefined) => (ms ? timestampFromMs(ms) : undefined);
const dur = (ms: number | undefined) => (ms === undefined ? undefined : durationFromMs(ms));

export function scheduleToWire(s: Schedule): WireSchedule {
  const t = s.task;
  return create(ScheduleSchema, {
    id: s.id,
    when: s.everyMs !== undefined ? { case: 'every', value: durationFromMs(s.everyMs) } : { case: 'cron', value: s.cron ?? '' },
    task: create(StartRequestSchema, {
      name: t.name,
      args: fromJson(ListValueSchema, t.args ?? []),
      kwargs: t.kwargs ?? {},
      queue: s.queue,
      countdown: dur(t.countdownMs),
      timeLimit: dur(t.timeLimitMs),
      retry:
        t.maxAttempts || t.initialBackoffMs !== undefined || t.maxBackoffMs !== undefined || t.retryOn?.length
          ? {
              maxAttempts: t.maxAttempts ?? 0,
              initialBackoff: dur(t.initialBackoffMs),
              maxBackoff: dur(t.maxBackoffMs),
              retryOn: t.retryOn ?? [],
            }
          : undefined,
    }),
    timezone: s.timezone ?? '',
    overlap: s.overlap === 'allow' ? OverlapPolicy.ALLOW : OverlapPolicy.SKIP,
    paused: s.paused,
    nextRunAt: ts(s.nextRunAt),
    lastRunAt: ts(s.lastRunAt),
    lastTaskId: s.lastTaskId ?? '',
  });
}
