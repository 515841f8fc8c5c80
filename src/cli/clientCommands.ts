/** `taskwire start|status|watch|cancel|workflow`: the calls from the shell, through the client. */
import { fromJson } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { StepSchema } from '../../gen/taskwire/v1/task_service_pb.js';
import { ErrorInfoSchema } from '../../gen/google/rpc/error_details_pb.js';
import { timestampMs, durationMs } from '@bufbuild/protobuf/wkt';
import { TaskState, TaskwireClient, argsOf, resultOf, type Schedule, type Task } from '../client/index.js';
import type { Flags } from '../config.js';
import { parseDuration } from '../config.js';
import type { JsonObject, JsonValue } from '../json.js';
import { UsageError } from './usageError.js';

/** What the command prints for an error of a call: its code, message and ErrorInfo metadata
 * (undefined when `err` is not one). */
export function rpcErrorText(err: unknown): string | undefined {
  if (!(err instanceof ConnectError)) return undefined;
  let text = `taskwire: ${Code[err.code]}: ${err.rawMessage}\n`;
  for (const info of err.findDetails(ErrorInfoSchema)) {
    for (const [k, v] of Object.entries(info.metadata)) text += `  ${k}: ${v}\n`;
  }
  return text;
}

/** Exit codes of `taskwire watch` (and `start --wait`): the final state. */
export const EXIT_CODE: Record<string, number> = { SUCCESS: 0, FAILURE: 1, REVOKED: 3 };

function client(flags: Flags): TaskwireClient {
  const server = typeof flags.server === 'string' ? flags.server : undefined;
  return new TaskwireClient({ baseUrl: server });
}

function jsonFlag<T>(flags: Flags, name: string, check: (v: unknown) => boolean, what: string): T | undefined {
  const text = flags[name];
  if (typeof text !== 'string') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new UsageError(`--${name} must be JSON (${what}); got ${text}`);
  }
  if (!check(value)) throw new UsageError(`--${name} must be ${what}; got ${text}`);
  return value as T;
}

const str = (flags: Flags, name: string): string | undefined => (typeof flags[name] === 'string' ? (flags[name] as string) : undefined);

export function stateName(t: Task): string {
  return TaskState[t.state] ?? 'UNSPECIFIED';
}

export function describe(t: Task): string {
  const parts = [`${t.id}  ${t.name}  ${stateName(t)}`, `v${t.version}`];
  if (t.attempt) parts.push(`attempt ${t.attempt}/${t.maxAttempts}`);
  if (t.progress && Object.keys(t.progress).length) parts.push(`progress ${JSON.stringify(t.progress)}`);
  if (t.parentId) parts.push(`of workflow ${t.parentId}`);
  if (t.children.length) parts.push(`${t.children.length} tasks`);
  if (t.state === TaskState.SUCCESS) parts.push(`result ${JSON.stringify(resultOf(t) ?? null)}`);
  if (t.error?.type) parts.push(`${t.error.type}: ${t.error.message}`);
  if (t.cancelRequested && t.state === TaskState.STARTED) parts.push('cancel requested');
  return parts.join('  ');
}

function toJsonOut(t: Task): string {
  return JSON.stringify({
    id: t.id,
    name: t.name,
    state: stateName(t),
    version: Number(t.version),
    attempt: t.attempt,
    args: argsOf(t),
    kwargs: t.kwargs ?? {},
    result: resultOf(t) ?? null,
    error: t.error?.type ? { type: t.error.type, message: t.error.message } : null,
    progress: t.progress ?? null,
    ...(t.parentId ? { parent_id: t.parentId } : {}),
    ...(t.children.length ? { children: t.children } : {}),
  });
}

const print = (flags: Flags, t: Task) => process.stdout.write(`${flags.json ? toJsonOut(t) : describe(t)}\n`);

function ref(positionals: string[], flags: Flags) {
  return { id: positionals[0] ?? '', exclusiveKey: str(flags, 'exclusive') ?? '', queue: str(flags, 'queue') ?? '' };
}

export async function startCommand(positionals: string[], flags: Flags): Promise<number> {
  const name = positionals[0];
  if (!name)
    throw new UsageError('usage: taskwire start NAME [--args JSON] [--kwargs JSON] [--exclusive KEY] [--queue Q] [--countdown 10s] [--wait]');
  const countdown = str(flags, 'countdown');
  const countdownMs = countdown === undefined ? undefined : parseDuration(countdown);
  if (countdown !== undefined && countdownMs === undefined) throw new UsageError(`--countdown must be a duration such as 10s; got ${countdown}`);
  const c = client(flags);
  const options = {
    args: jsonFlag<JsonValue[]>(flags, 'args', Array.isArray, 'a JSON list'),
    kwargs: jsonFlag<JsonObject>(flags, 'kwargs', (v) => typeof v === 'object' && v !== null && !Array.isArray(v), 'a JSON object'),
    exclusiveKey: str(flags, 'exclusive'),
    idempotencyKey: str(flags, 'idempotency-key'),
    queue: str(flags, 'queue'),
    countdownMs,
    onHint: (hint: string) => process.stderr.write(`hint: ${hint}\n`),
  };
  if (!flags.wait) {
    print(flags, await c.start(name, options));
    return 0;
  }
  // One Run call: each record from the queued one to the terminal one.
  let last: Task | undefined;
  for await (const t of c.run(name, options)) {
    print(flags, t);
    last = t;
  }
  return last ? (EXIT_CODE[stateName(last)] ?? 1) : 1;
}

export async function statusCommand(positionals: string[], flags: Flags): Promise<number> {
  print(flags, await client(flags).status(ref(positionals, flags)));
  return 0;
}

async function watchLoop(c: TaskwireClient, r: ReturnType<typeof ref>, flags: Flags): Promise<number> {
  let last: Task | undefined;
  for await (const t of c.watch(r)) {
    print(flags, t);
    last = t;
  }
  return last ? (EXIT_CODE[stateName(last)] ?? 1) : 1;
}

export async function watchCommand(positionals: string[], flags: Flags): Promise<number> {
  return watchLoop(client(flags), ref(positionals, flags), flags);
}

export async function cancelCommand(positionals: string[], flags: Flags): Promise<number> {
  const res = await client(flags).cancel(ref(positionals, flags), {
    terminate: flags.terminate === true,
    reason: str(flags, 'reason'),
  });
  process.stdout.write(`${res.message}\n`);
  if (res.task) print(flags, res.task);
  return 0;
}

const WORKFLOW_USAGE = 'usage: taskwire workflow STEP_JSON [--queue Q] [--exclusive KEY] [--idempotency-key K] [--wait]';

/** Start a workflow given as a Step in protobuf JSON (as grpcurl and curl send it). */
export async function workflowCommand(positionals: string[], flags: Flags): Promise<number> {
  const text = positionals[0];
  if (!text) throw new UsageError(WORKFLOW_USAGE);
  let root: ReturnType<typeof fromJson<typeof StepSchema>>;
  try {
    root = fromJson(StepSchema, JSON.parse(text) as JsonValue);
  } catch (err) {
    throw new UsageError(
      `the workflow must be a Step in JSON, such as {"chain":{"steps":[{"task":{"name":"add","args":[2,2]}}]}}: ${(err as Error).message}\n${WORKFLOW_USAGE}`,
    );
  }
  const c = client(flags);
  const res = await c.rpc.startWorkflow({
    root,
    queue: str(flags, 'queue'),
    exclusiveKey: str(flags, 'exclusive'),
    idempotencyKey: str(flags, 'idempotency-key'),
  });
  const task = res.task!;
  if (!flags.wait) {
    print(flags, task);
    return 0;
  }
  return watchLoop(c, { id: task.id, exclusiveKey: '', queue: '' }, flags);
}

const SCHEDULE_USAGE = `usage:
  taskwire schedule create ID (--every 10s | --cron '0 3 * * *') --task NAME [--args JSON] [--kwargs JSON]
                           [--queue Q] [--timezone TZ] [--overlap skip|allow] [--replace]
  taskwire schedule list [--json]
  taskwire schedule get|pause|resume|delete ID [--json]`;

const when = (s: Schedule) => (s.when.case === 'every' ? `every ${durationMs(s.when.value) / 1000}s` : `cron '${s.when.value}' ${s.timezone}`);
const iso = (t: Schedule['nextRunAt']) => (t ? new Date(timestampMs(t)).toISOString() : '-');

function scheduleJson(s: Schedule): string {
  return JSON.stringify({
    id: s.id,
    every_ms: s.when.case === 'every' ? durationMs(s.when.value) : null,
    cron: s.when.case === 'cron' ? s.when.value : null,
    timezone: s.timezone || null,
    task: s.task?.name ?? '',
    queue: s.task?.queue ?? '',
    overlap: s.overlap === 1 ? 'allow' : 'skip',
    paused: s.paused,
    next_run_at: s.nextRunAt ? iso(s.nextRunAt) : null,
    last_run_at: s.lastRunAt ? iso(s.lastRunAt) : null,
    last_task_id: s.lastTaskId || null,
  });
}

function describeSchedule(s: Schedule): string {
  const next = s.paused ? 'paused' : `next ${iso(s.nextRunAt)}`;
  const last = s.lastRunAt ? `last ${iso(s.lastRunAt)} ${s.lastTaskId}` : 'never run';
  return `${s.id}  ${when(s)}  ${s.task?.name ?? ''}@${s.task?.queue ?? ''}  ${s.overlap === 1 ? 'allow' : 'skip'}  ${next}  ${last}`;
}

export async function scheduleCommand(positionals: string[], flags: Flags): Promise<number> {
  const [sub, id] = positionals;
  const c = client(flags);
  const show = (s: Schedule) => process.stdout.write(`${flags.json ? scheduleJson(s) : describeSchedule(s)}\n`);
  if (sub === 'list') {
    for (const s of await c.listSchedules()) show(s);
    return 0;
  }
  if (!id || !['create', 'get', 'pause', 'resume', 'delete'].includes(sub ?? '')) throw new UsageError(SCHEDULE_USAGE);
  switch (sub) {
    case 'create': {
      const task = str(flags, 'task');
      if (!task) throw new UsageError(`--task NAME is required\n${SCHEDULE_USAGE}`);
      const every = str(flags, 'every');
      if (every !== undefined && flags.cron !== undefined) throw new UsageError('give --every or --cron, not both');
      const everyMs = every === undefined ? undefined : parseDuration(every);
      if (every !== undefined && everyMs === undefined) throw new UsageError(`--every must be a duration such as 10s; got ${every}`);
      const overlap = str(flags, 'overlap');
      if (overlap !== undefined && overlap !== 'skip' && overlap !== 'allow') throw new UsageError(`--overlap must be skip or allow; got ${overlap}`);
      show(
        await c.createSchedule(id, task, {
          everyMs,
          cron: str(flags, 'cron'),
          timezone: str(flags, 'timezone'),
          overlap,
          args: jsonFlag<JsonValue[]>(flags, 'args', Array.isArray, 'a JSON list'),
          kwargs: jsonFlag<JsonObject>(flags, 'kwargs', (v) => typeof v === 'object' && v !== null && !Array.isArray(v), 'a JSON object'),
          queue: str(flags, 'queue'),
          replace: flags.replace === true,
          onHint: (hint: string) => process.stderr.write(`hint: ${hint}\n`),
        }),
      );
      return 0;
    }
    case 'get':
      show(await c.getSchedule(id));
      return 0;
    case 'pause':
      show(await c.pauseSchedule(id));
      return 0;
    case 'resume':
      show(await c.resumeSchedule(id));
      return 0;
    default:
      await c.deleteSchedule(id);
      process.stdout.write(`schedule ${id} deleted\n`);
      return 0;
  }
}
