/**
 * How a task is written: a typed function registered under a name.
 *
 *   export const hello = defineTask('hello', async ({ args: [name = 'Bob'] }) => `Hello ${name}!`);
 *
 * The handler runs on a worker thread (or on the worker's main thread with `inline: true`), gets its positional and keyword arguments (JSON),
 * an AbortSignal that fires when the task is cancelled, a way to report progress, and
 * the attempt number. It returns a JSON value (or nothing) or throws.
 */
import { isValidQueueName, MAX_PARTITIONS } from '../ids.js';
import type { JsonValue } from '../json.js';

/** Positional arguments: JSON values; optional ones may be missing. */
export type TaskArgs = (JsonValue | undefined)[];
/** Keyword arguments: a JSON object; optional ones may be missing. */
export type TaskKwargs = { [key: string]: JsonValue | undefined };
type JsonObject = { [key: string]: JsonValue };

export interface TaskContext<A extends TaskArgs = TaskArgs, K extends TaskKwargs = TaskKwargs> {
  id: string;
  name: string;
  args: A;
  kwargs: K;
  /** 1 for the first run. */
  attempt: number;
  /** Fires when the task is cancelled; a cooperative handler stops soon after. */
  signal: AbortSignal;
  /** Publish progress (a JSON object) without changing the task's state. */
  progress(update: JsonObject): void;
}

export interface TaskOptions {
  /** The queue the task is sent to unless Start names another (default "default"). */
  queue?: string;
  /** Attempts in all, the first run included; lost workers and retried errors use them (default 3). */
  maxAttempts?: number;
  /** Error types (error.name) that are retried, or ['*'] for any error (default: none). */
  retryOn?: string[];
  /** Wait before the second attempt; doubles each attempt, with jitter (default 1s). */
  initialBackoffMs?: number;
  /** Longest wait between attempts (default 5 min). */
  maxBackoffMs?: number;
  /** Hard time limit: the task is stopped by force after this long (default: none). */
  timeLimitMs?: number;
  /**
   * Run the handler on the worker's main thread instead of a handler thread, which saves
   * the hop between threads: for handlers that never block (no busy loop, no synchronous
   * I/O), as they would stall the whole worker. Such a task cannot be stopped by force: a
   * terminate or a hard time limit fires its AbortSignal and ends the task at once
   * (REVOKED, or FAILURE with TimeLimitExceeded), its result is then discarded, and its
   * slot stays taken until the handler returns (default false).
   */
  inline?: boolean;
}

export type TaskHandler<A extends TaskArgs, K extends TaskKwargs, R> = (ctx: TaskContext<A, K>) => R | Promise<R>;

export interface TaskDefinition<A extends TaskArgs = TaskArgs, K extends TaskKwargs = TaskKwargs, R = unknown> extends TaskOptions {
  readonly name: string;
  readonly run: TaskHandler<A, K, R>;
}

export const TASK_DEFAULTS = {
  maxAttempts: 3,
  initialBackoffMs: 1000,
  maxBackoffMs: 300_000,
} as const;

const TASK_NAME = /^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$/;

export function defineTask<A extends TaskArgs = TaskArgs, K extends TaskKwargs = TaskKwargs, R = unknown>(
  name: string,
  run: TaskHandler<A, K, R>,
): TaskDefinition<A, K, R>;
export function defineTask<A extends TaskArgs = TaskArgs, K extends TaskKwargs = TaskKwargs, R = unknown>(
  name: string,
  options: TaskOptions,
  run: TaskHandler<A, K, R>,
): TaskDefinition<A, K, R>;
export function defineTask<A extends TaskArgs, K extends TaskKwargs, R>(
  name: string,
  optionsOrRun: TaskOptions | TaskHandler<A, K, R>,
  maybeRun?: TaskHandler<A, K, R>,
): TaskDefinition<A, K, R> {
  if (!TASK_NAME.test(name)) {
    throw new Error(`task name "${name}" must start with a letter or '_' and use letters, digits, '_', '.', ':', '-'`);
  }
  const options = typeof optionsOrRun === 'function' ? {} : optionsOrRun;
  const run = typeof optionsOrRun === 'function' ? optionsOrRun : maybeRun;
  if (!run) throw new Error(`task "${name}" has no handler`);
  return Object.freeze({ ...options, name, run });
}

/** When a declared schedule ticks: a period in ms, or a cron expression (5 fields, or 6
 * with seconds first) in a time zone (IANA name, default UTC). */
export type ScheduleWhen = { everyMs: number } | { cron: string; timezone?: string };

export interface ScheduleOptions {
  args?: JsonValue[];
  kwargs?: JsonObject;
  /** The queue of the runs (default: the task's). */
  queue?: string;
  /** 'skip' (default): no run while the previous one has not finished; 'allow': runs may overlap. */
  overlap?: 'allow' | 'skip';
  /** Each run's hard time limit and attempts (default: the task's). */
  timeLimitMs?: number;
  maxAttempts?: number;
}

const SCHEDULE = Symbol.for('taskwire.ScheduleDefinition');

/** A schedule declared in code, upserted by every worker at start (see defineSchedule). */
export interface ScheduleDefinition {
  readonly [SCHEDULE]: true;
  readonly id: string;
  readonly when: ScheduleWhen;
  readonly task: string;
  readonly options: ScheduleOptions;
}

/**
 * A periodic schedule declared beside the tasks, as Celery's beat_schedule: list it in
 * createRegistry(...) and every worker creates it at start, or replaces the stored one when
 * the code changed it (keeping its next run and pause when it did not). The code is then
 * the source of truth for it.
 *
 *   export const nightly = defineSchedule('nightly', { cron: '0 3 * * *' }, cleanup, { args: [30] });
 */
export function defineSchedule(
  id: string,
  when: ScheduleWhen,
  task: TaskDefinition<any, any, any> | string,
  options: ScheduleOptions = {},
): ScheduleDefinition {
  return Object.freeze({ [SCHEDULE]: true as const, id, when, task: typeof task === 'string' ? task : task.name, options });
}

function isSchedule(value: unknown): value is ScheduleDefinition {
  return typeof value === 'object' && value !== null && (value as Partial<ScheduleDefinition>)[SCHEDULE] === true;
}

const QUEUE = Symbol.for('taskwire.QueueDefinition');

export interface QueueOptions {
  /** Partitions the queue's tasks spread over, each its own Redis Cluster slot (1: not partitioned). */
  partitions: number;
}

/** A queue declared beside the tasks (see defineQueue). */
export interface QueueDefinition extends QueueOptions {
  readonly [QUEUE]: true;
  readonly name: string;
}

/**
 * A queue declared in code, listed in createRegistry(...): a hot queue spread over several
 * partitions, as TASKWIRE_QUEUE_PARTITIONS does. Every process loading the registry (API,
 * workers, beat) sees the same count; a different count for the queue in the setting stops
 * the process at start.
 *
 *   export const emails = defineQueue('emails', { partitions: 4 });
 */
export function defineQueue(name: string, options: QueueOptions): QueueDefinition {
  if (!isValidQueueName(name)) throw new Error(`queue name "${name}" must be 1 to 64 letters, digits, '_', '.', '-'`);
  const n = options.partitions;
  if (!Number.isInteger(n) || n < 1 || n > MAX_PARTITIONS) {
    throw new Error(`queue "${name}": partitions must be a whole number from 1 to ${MAX_PARTITIONS}; got ${String(n)}`);
  }
  return Object.freeze({ [QUEUE]: true as const, name, partitions: n });
}

function isQueue(value: unknown): value is QueueDefinition {
  return typeof value === 'object' && value !== null && (value as Partial<QueueDefinition>)[QUEUE] === true;
}

/** What createRegistry takes: tasks, schedules and queues. */
export type RegistryEntry = TaskDefinition<any, any, any> | ScheduleDefinition | QueueDefinition;

/** Marks a registry across copies of this module: a tasks module written in TypeScript
 * imports the TypeScript source (through tsx) while a built taskwire runs dist/. */
const REGISTRY = Symbol.for('taskwire.TaskRegistry');

/** A named set of tasks: what a worker can run and what the API accepts. */
export class TaskRegistry {
  readonly [REGISTRY] = true;
  private readonly byName = new Map<string, TaskDefinition<any, any, any>>();
  private readonly declared = new Map<string, ScheduleDefinition>();
  private readonly declaredQueues = new Map<string, QueueDefinition>();

  constructor(definitions: Iterable<RegistryEntry>) {
    for (const def of definitions) {
      if (isQueue(def)) {
        if (this.declaredQueues.has(def.name)) throw new Error(`queue "${def.name}" is defined twice`);
        this.declaredQueues.set(def.name, def);
        continue;
      }
      if (isSchedule(def)) {
        if (this.declared.has(def.id)) throw new Error(`schedule "${def.id}" is defined twice`);
        this.declared.set(def.id, def);
        continue;
      }
      if (this.byName.has(def.name)) throw new Error(`task "${def.name}" is defined twice`);
      this.byName.set(def.name, def);
    }
  }

  get(name: string): TaskDefinition | undefined {
    return this.byName.get(name);
  }

  names(): string[] {
    return [...this.byName.keys()].sort();
  }

  /**
   * The partition count of each partitioned queue: those declared with defineQueue and
   * those of `configured` (TASKWIRE_QUEUE_PARTITIONS). A queue given two different counts
   * is an error: every process must agree on a queue's partitions.
   */
  queuePartitions(configured: Readonly<Record<string, number>> = {}): Record<string, number> {
    const counts: Record<string, number> = Object.create(null);
    for (const [queue, n] of Object.entries(configured)) counts[queue] = n;
    for (const { name, partitions } of this.declaredQueues.values()) {
      const set = counts[name];
      if (set !== undefined && set !== partitions) {
        throw new Error(
          `queue "${name}" has ${partitions} partition(s) in the tasks module (defineQueue) but ${set} in --queue-partitions / TASKWIRE_QUEUE_PARTITIONS: give it one count`,
        );
      }
      counts[name] = partitions;
    }
    return counts;
  }

  /** The schedules declared with defineSchedule, which workers upsert at start. */
  schedules(): ScheduleDefinition[] {
    return [...this.declared.values()];
  }
}

export function createRegistry(...definitions: RegistryEntry[]): TaskRegistry {
  return new TaskRegistry(definitions);
}

/** Let a built taskwire import a tasks module written in TypeScript: tsx, which the user's
 * project provides (taskwire itself needs no compiler at run time). */
async function registerTypeScript(modulePath: string): Promise<void> {
  let esm: typeof import('tsx/esm/api');
  let cjs: typeof import('tsx/cjs/api');
  try {
    [esm, cjs] = await Promise.all([import('tsx/esm/api'), import('tsx/cjs/api')]);
  } catch {
    throw new Error(
      `${modulePath} is TypeScript: add tsx to your project (npm install --save-dev tsx) to run it, or point TASKWIRE_TASKS at its compiled JavaScript`,
    );
  }
  esm.register();
  cjs.register();
}

/** Load the registry a tasks module exports (as `default` or `registry`). */
export async function loadRegistry(modulePath: string): Promise<TaskRegistry> {
  const url = modulePath.startsWith('file:') ? modulePath : (await import('node:url')).pathToFileURL(modulePath).href;
  let mod: Record<string, unknown>;
  try {
    // Built taskwire (dist/) loading a tasks module written in TypeScript: compile it on the fly.
    if (/\.[cm]?ts$/.test(modulePath) && !import.meta.url.endsWith('.ts')) await registerTypeScript(modulePath);
    mod = (await import(url)) as Record<string, unknown>;
  } catch (err) {
    throw new Error(`cannot load the tasks module ${modulePath}: ${(err as Error).message}`);
  }
  // A module compiled as CommonJS arrives wrapped: its exports object is the default.
  const exports = (mod.default as Record<string, unknown> | undefined)?.default !== undefined ? (mod.default as Record<string, unknown>) : mod;
  const registry = exports.default ?? exports.registry;
  if (!(registry instanceof TaskRegistry) && (registry as Partial<TaskRegistry> | undefined)?.[REGISTRY] !== true) {
    throw new Error(`the tasks module ${modulePath} must export a registry (createRegistry(...)) as default`);
  }
  return registry as TaskRegistry;
}
