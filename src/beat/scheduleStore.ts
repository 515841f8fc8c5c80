/**
 * Periodic schedules in Redis: create, replace, read, list, pause, resume, delete, and fire
 * one tick. Each schedule lives in the queue of the task it starts (its hash and its entry in
 * the queue's due set), so that checking a tick and starting its run is one script
 * (fire-10.lua); a registry (id → queue) finds it by id.
 */
import type { ChainableCommander } from 'ioredis';
import { execBatched, type RedisClient } from '../redis.js';
import { noteQueue } from '../store/queueRegistry.js';
import { invalid, quote, TaskwireError } from '../errors.js';
import { newTaskId, queueName } from '../ids.js';
import { channels, keys } from '../store/keys.js';
import { newRecordFields, pairsToHash, type Hash, type TaskRecord } from '../store/record.js';
import { runScript } from '../store/scripts.js';
import type { StartInput, StoreLimits, TaskStore } from '../store/taskStore.js';
import { checkWhen, nextTick } from './grid.js';

export type Overlap = 'allow' | 'skip';

/** What a caller gives: a schedule's definition. */
export interface ScheduleSpec {
  id: string;
  everyMs?: number;
  cron?: string;
  /** IANA name for cron (default UTC). */
  timezone?: string;
  /** What each tick starts (no exclusive or idempotency key, no absolute times). */
  task: StartInput;
  /** Default skip: no new run while the previous one is not terminal. */
  overlap?: Overlap;
  paused?: boolean;
}

/** A stored schedule, as read back. */
export interface Schedule {
  id: string;
  queue: string;
  everyMs?: number;
  cron?: string;
  timezone?: string;
  task: StartInput;
  overlap: Overlap;
  paused: boolean;
  /** ms since epoch; absent while paused */
  nextRunAt?: number;
  lastRunAt?: number;
  lastTaskId?: string;
  /** Runs started and ticks skipped (overlap skip) since the schedule was created. */
  runs: number;
  skipped: number;
}

export type FireOutcome = 'created' | 'skipped' | 'stale' | 'early';

const SCHEDULE_ID = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$/;

const ID_RULE = "use 1 to 128 letters, digits, '_', '.', ':', '-', starting with a letter, digit or '_'";

/** What a schedule needs of the task store: the checks and defaults of a Start. */
type Preparer = Pick<TaskStore, 'prepare' | 'partitions'>;

export class ScheduleStore {
  private preparer: Promise<Preparer> | undefined;

  /** `tasks`: the task store, or how to make it when first needed (a worker's ticker loads
   * it only once there is a schedule to fire). */
  constructor(
    private readonly redis: RedisClient,
    private readonly tasks: Preparer | (() => Promise<Preparer>),
    private readonly limits: StoreLimits,
  ) {}

  private taskStore(): Promise<Preparer> {
    const tasks = this.tasks;
    this.preparer ??= typeof tasks === 'function' ? tasks() : Promise.resolve(tasks);
    return this.preparer;
  }

  private prepare(input: StartInput, now?: number): Promise<TaskRecord> {
    return this.taskStore().then((t) => t.prepare(input, now));
  }

  /** Check a definition before anything reaches Redis; returns it normalized, with its queue. */
  async check(spec: ScheduleSpec): Promise<{ spec: ScheduleSpec; queue: string }> {
    if (!spec.id) throw invalid('schedule.id', `is required: the schedule's name (${ID_RULE})`);
    if (!SCHEDULE_ID.test(spec.id)) throw invalid('schedule.id', `${quote(spec.id)} is not a schedule id: ${ID_RULE}`);
    checkWhen(spec);
    const task = spec.task;
    if (!task) throw invalid('schedule.task', 'is required: the task each tick starts');
    for (const [field, value, why] of [
      ['exclusive_key', task.exclusiveKey, 'use overlap skip to keep runs from overlapping'],
      ['idempotency_key', task.idempotencyKey, 'each run has its own, naming the schedule and the tick'],
      ['not_before', task.notBefore, 'a fixed time does not repeat; use countdown for a delay after each tick'],
      ['expires_at', task.expiresAt, 'a fixed time does not repeat'],
    ] as const) {
      if (value !== undefined && value !== '') throw invalid(`schedule.task.${field}`, `cannot be set on a schedule: ${why}`);
    }
    let queue: string;
    try {
      queue = (await this.prepare(task)).queue;
    } catch (err) {
      const field = err instanceof TaskwireError ? err.details.violations?.[0]?.field : undefined;
      if (err instanceof TaskwireError && err.kind === 'invalid' && field) {
        throw invalid(`schedule.task.${field}`, err.details.violations![0]!.description);
      }
      throw err;
    }
    const clean: StartInput = { ...task, queue };
    for (const k of Object.keys(clean) as (keyof StartInput)[]) if (clean[k] === undefined) delete clean[k];
    return {
      spec: {
        id: spec.id,
        everyMs: spec.everyMs,
        cron: spec.cron ? spec.cron.trim() : undefined,
        timezone: spec.cron ? spec.timezone || 'UTC' : undefined,
        task: clean,
        overlap: spec.overlap ?? 'skip',
        paused: spec.paused,
      },
      queue,
    };
  }

  /**
   * Create a schedule, or replace one with the same id when `replace` (else ALREADY_EXISTS).
   * A replacement with the same timing and task keeps its next run; another queue moves it.
   * `keepPaused`: a replacement keeps the stored paused flag (code-declared schedules).
   */
  async put(input: ScheduleSpec, options: { replace?: boolean; keepPaused?: boolean } = {}): Promise<{ schedule: Schedule; outcome: string }> {
    const { spec, queue: name } = await this.check(input);
    // A schedule of a partitioned queue lives in the partition its id maps to, and its runs too.
    const queue = (await this.taskStore()).partitions.pick(name, `schedule:${spec.id}`);
    const registered = await this.redis.hget(keys.scheduleRegistry(), spec.id);
    if (registered && !options.replace && (await this.redis.exists(keys.schedule(registered, spec.id)))) {
      throw exists(spec.id);
    }
    if (registered && registered !== queue && options.replace) {
      await this.edit(registered, 'delete', spec.id, []);
    }
    await this.redis.hset(keys.scheduleRegistry(), spec.id, queue);
    const fields = definitionFields(spec, name);
    const paused = options.keepPaused && spec.paused === undefined ? '' : spec.paused ? '1' : '0';
    const reply = (await this.edit(queue, 'put', spec.id, [options.replace ? '1' : '0', nextTick(spec, Date.now()), paused, ...fields])) as [
      string,
      string[]?,
    ];
    if (reply[0] === 'exists') throw exists(spec.id);
    return { schedule: parseSchedule(pairsToHash(reply[1]!)), outcome: reply[0] };
  }

  async get(id: string): Promise<Schedule> {
    const queue = await this.queueOf(id);
    const hash = await this.redis.hgetall(keys.schedule(queue, id));
    if (!hash.id) throw missing(id);
    return parseSchedule(hash);
  }

  /** Every schedule, by id. */
  async list(): Promise<Schedule[]> {
    const registry = await this.redis.hgetall(keys.scheduleRegistry());
    const ids = Object.keys(registry).sort();
    if (!ids.length) return [];
    const hashes = (
      await execBatched(
        this.redis,
        ids.map((id) => ({ key: keys.schedule(registry[id]!, id), add: (p: ChainableCommander) => p.hgetall(keys.schedule(registry[id]!, id)) })),
      )
    ).map(([, h]) => h as Hash);
    return hashes.filter((h) => h?.id).map(parseSchedule);
  }

  /** Stops it at once: when this returns, no process can fire it again. */
  async delete(id: string): Promise<void> {
    const queue = await this.queueOf(id);
    const reply = (await this.edit(queue, 'delete', id, [])) as [string];
    await this.redis.hdel(keys.scheduleRegistry(), id);
    if (reply[0] === 'missing') throw missing(id);
  }

  async pause(id: string): Promise<Schedule> {
    return this.toggle(id, 'pause', []);
  }

  /** Resumes on the grid: the next tick after now (ticks missed while paused do not run). */
  async resume(id: string): Promise<Schedule> {
    const current = await this.get(id);
    return this.toggle(id, 'resume', [nextTick(current, Date.now())]);
  }

  private async toggle(id: string, op: 'pause' | 'resume', args: (string | number)[]): Promise<Schedule> {
    const queue = await this.queueOf(id);
    const reply = (await this.edit(queue, op, id, args)) as [string, string[]?];
    if (reply[0] === 'missing') throw missing(id);
    return parseSchedule(pairsToHash(reply[1]!));
  }

  /** Schedule ids of `queue` whose next run is at or before `now`, with that time. */
  async due(queue: string, now: number, max = 100): Promise<{ id: string; at: number }[]> {
    const flat = await this.redis.zrangebyscore(keys.schedules(queue), '-inf', now, 'WITHSCORES', 'LIMIT', 0, max);
    const out: { id: string; at: number }[] = [];
    for (let i = 0; i < flat.length; i += 2) out.push({ id: flat[i]!, at: Number(flat[i + 1]) });
    return out;
  }

  /** The queues that hold schedules. */
  async queues(): Promise<string[]> {
    return [...new Set(Object.values(await this.redis.hgetall(keys.scheduleRegistry())))];
  }

  /** The earliest next run (ms) among `queues`' schedules, if any. */
  async earliest(queues: string[]): Promise<number | undefined> {
    if (!queues.length) return undefined;
    const replies = await execBatched(
      this.redis,
      queues.map((q) => ({ key: keys.schedules(q), add: (p: ChainableCommander) => p.zrange(keys.schedules(q), 0, 0, 'WITHSCORES') })),
    );
    let min: number | undefined;
    for (const [, r] of replies) {
      const flat = r as string[];
      if (flat?.length === 2) min = Math.min(min ?? Number.POSITIVE_INFINITY, Number(flat[1]));
    }
    return min;
  }

  /**
   * Fire the tick of schedule `id` of `queue` that is due: start its run unless another
   * process did (or the schedule changed), or skip it under overlap skip. Throws when this
   * process cannot build the run (its task is not in this process's registry).
   */
  async fire(queue: string, id: string, now = Date.now()): Promise<FireOutcome> {
    const hash = await this.redis.hgetall(keys.schedule(queue, id));
    if (!hash.id || hash.paused === '1' || !hash.next_run_at) return 'stale';
    const schedule = parseSchedule(hash);
    const tick = Number(hash.next_run_at);
    if (tick > now) return 'stale';
    // The next grid point after the later of the tick and now: one catch-up run after a
    // downtime, then back on the grid.
    const next = nextTick(schedule, Math.max(tick, now));
    const task = await this.prepare({ ...schedule.task, queue: queueName(queue) }, now);
    await noteQueue(this.redis, queue);
    const record = {
      ...task,
      id: newTaskId(queue),
      idempotencyKey: `schedule:${id}:${tick}`,
      scheduleId: id,
    };
    const last = hash.last_task_id ?? '';
    const reply = (await runScript(
      this.redis,
      'fire',
      [
        keys.schedule(queue, id),
        keys.schedules(queue),
        keys.task(queue, record.id),
        keys.events(queue, record.id),
        keys.stream(queue),
        keys.scheduled(queue),
        keys.index(queue),
        keys.latest(queue),
        keys.idempotency(queue, record.idempotencyKey),
        keys.task(queue, last),
      ],
      [
        id,
        hash.next_run_at,
        next,
        last,
        now,
        record.id,
        record.notBefore ?? 0,
        channels.events(queue),
        this.limits.eventLogCap,
        this.limits.resultTtlMs,
        channels.control(queue),
        record.idempotencyKey,
        ...newRecordFields(record),
      ],
    )) as [FireOutcome, string?];
    return reply[0];
  }

  private async queueOf(id: string): Promise<string> {
    if (!id) throw invalid('id', 'is required: the schedule id');
    if (!SCHEDULE_ID.test(id)) throw invalid('id', `${quote(id)} is not a schedule id: ${ID_RULE}`);
    const queue = await this.redis.hget(keys.scheduleRegistry(), id);
    if (!queue) throw missing(id);
    return queue;
  }

  private edit(queue: string, op: string, id: string, args: (string | number)[]): Promise<unknown> {
    return runScript(this.redis, 'schedule_edit', [keys.schedule(queue, id), keys.schedules(queue)], [op, id, ...args]);
  }
}

function exists(id: string): TaskwireError {
  return new TaskwireError('exists', `a schedule with id ${quote(id)} already exists; delete it first, or create with replace`, {
    reason: 'SCHEDULE_EXISTS',
    metadata: { schedule_id: id },
  });
}

function missing(id: string): TaskwireError {
  return new TaskwireError('not_found', `no schedule with id ${quote(id)}`, { reason: 'SCHEDULE_NOT_FOUND', metadata: { schedule_id: id } });
}

/** The hash fields of a definition; `def` is the timing and the task as one text. */
function definitionFields(spec: ScheduleSpec, queue: string): string[] {
  const kind = spec.everyMs !== undefined ? 'every' : 'cron';
  const task = JSON.stringify(spec.task);
  const def = JSON.stringify([kind, spec.everyMs ?? 0, spec.cron ?? '', spec.timezone ?? '', spec.overlap, task]);
  const out = ['id', spec.id, 'queue', queue, 'kind', kind, 'overlap', spec.overlap!, 'task', task, 'def', def];
  if (kind === 'every') out.push('every_ms', String(spec.everyMs));
  else out.push('cron', spec.cron!, 'timezone', spec.timezone!);
  return out;
}

export function parseSchedule(h: Hash): Schedule {
  const num = (s: string | undefined) => (s ? Number(s) : undefined);
  return {
    id: h.id ?? '',
    queue: h.queue ?? '',
    everyMs: h.kind === 'every' ? Number(h.every_ms) : undefined,
    cron: h.kind === 'cron' ? h.cron : undefined,
    timezone: h.kind === 'cron' ? h.timezone : undefined,
    task: JSON.parse(h.task ?? '{}') as StartInput,
    overlap: h.overlap === 'allow' ? 'allow' : 'skip',
    paused: h.paused === '1',
    nextRunAt: h.paused === '1' ? undefined : num(h.next_run_at),
    lastRunAt: num(h.last_run_at),
    lastTaskId: h.last_task_id || undefined,
    runs: num(h.runs) ?? 0,
    skipped: num(h.skipped) ?? 0,
  };
}
