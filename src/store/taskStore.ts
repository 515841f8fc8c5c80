/**
 * The task records: create (with the queue message, atomically), read, resolve "the latest
 * task", cancel, and read a task's change log. Used by the API; the worker's writes are in
 * store/attemptStore.ts. Every write goes through a Lua script.
 * One file, past the usual size: each method is the Redis side of one RPC, checked the same
 * way before it reaches Redis.
 */
import type { RedisClient } from '../redis.js';
import { invalid, notFound, quote, TaskwireError } from '../errors.js';
import { noteQueue } from './queueRegistry.js';
import { DEFAULT_QUEUE, idTime, isValidQueueName, newTaskId, QueuePartitions, queueOf } from '../ids.js';
import { assertJson, EncodeError, type JsonObject, type JsonValue } from '../json.js';
import { TASK_DEFAULTS, type TaskRegistry } from '../tasks/define.js';
import { EnqueueBatcher, enqueueCall } from './enqueueBatcher.js';
import { ExclusiveGuard } from './exclusiveGuard.js';
import { cancelKeys, channels, keys } from './keys.js';
import { newRecordFields, pairsToHash, parseRecord, type Hash, type TaskRecord } from './record.js';
import { runScript } from './scripts.js';
import type { State } from './states.js';
import { WorkflowStore } from './workflowStore.js';

export interface StartInput {
  name: string;
  args?: JsonValue[];
  kwargs?: JsonObject;
  queue?: string;
  exclusiveKey?: string;
  idempotencyKey?: string;
  /** ms since epoch */
  notBefore?: number;
  countdownMs?: number;
  /** ms since epoch */
  expiresAt?: number;
  timeLimitMs?: number;
  maxAttempts?: number;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  retryOn?: string[];
  /** W3C traceparent to store with the task (see src/trace.ts). */
  traceparent?: string;
}

const DAY_MS = 24 * 3600 * 1000;

/**
 * How far ahead a Start may reach. A countdown or not_before beyond a year is far more
 * likely a unit mistake than a plan; a time limit is a timer in the worker, and a Node
 * timer set past its reach fires at once, so the limit stays inside that reach.
 */
export const START_LIMITS = {
  maxDelayMs: 365 * DAY_MS,
  maxBackoffMs: 365 * DAY_MS,
  maxTimeLimitMs: 24 * DAY_MS,
} as const;

const days = (ms: number) => `${ms / DAY_MS} days (${ms / 1000}s)`;

export interface StartResult {
  task: TaskRecord;
  /** false when an idempotency key returned an existing task */
  created: boolean;
}

export interface TaskRef {
  id?: string;
  exclusiveKey?: string;
  queue?: string;
}

export interface ListQuery {
  queue?: string;
  states?: State[];
  name?: string;
  pageSize?: number;
  pageToken?: string;
  /** ms since epoch: only tasks created at or after it */
  createdAfter?: number;
}

export interface ListPage {
  tasks: TaskRecord[];
  nextPageToken: string;
}

export type CancelOutcome = 'revoked' | 'requested' | 'finished';

export interface StoreLimits {
  resultTtlMs: number;
  eventLogCap: number;
  maxPayloadBytes: number;
  /** Partition count of each partitioned queue (TASKWIRE_QUEUE_PARTITIONS). */
  queuePartitions?: Record<string, number>;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: the pattern exists to refuse control characters
export const KEY_TEXT = /^[^\x00-\x1f\x7f]{1,200}$/;

export class TaskStore {
  private readonly guard: ExclusiveGuard;
  private readonly batcher: EnqueueBatcher;
  /** Workflows: their records are task records, read and cancelled through this store. */
  readonly workflows: WorkflowStore;
  /** Which queues are partitioned, and which partition a new task goes to. */
  readonly partitions: QueuePartitions;

  constructor(
    private readonly redis: RedisClient,
    private readonly registry: TaskRegistry,
    private readonly limits: StoreLimits,
  ) {
    this.partitions = new QueuePartitions(registry.queuePartitions(limits.queuePartitions));
    this.guard = new ExclusiveGuard(redis);
    this.batcher = new EnqueueBatcher(redis, limits);
    this.workflows = new WorkflowStore(
      redis,
      limits,
      this.partitions,
      (input, partitionKey) => this.prepare(input, Date.now(), partitionKey),
      (id) => this.get(id),
    );
  }

  /**
   * Check a Start before anything reaches Redis; returns the record to create. Its id names
   * the partition of a partitioned queue: the one `partitionKey` (else the exclusive or the
   * idempotency key) maps to, or the next in turn.
   */
  prepare(input: StartInput, now = Date.now(), partitionKey?: string): TaskRecord {
    const def = this.registry.get(input.name);
    if (!input.name) throw invalid('name', 'is required: the name of a registered task');
    if (!def) {
      throw invalid('name', `no task is registered as ${quote(input.name)}; known tasks: ${this.registry.names().join(', ')}`);
    }
    const queue = input.queue || def.queue || DEFAULT_QUEUE;
    if (!isValidQueueName(queue)) {
      throw invalid('queue', `${quote(queue)} is not a queue name: use 1 to 64 letters, digits, '_', '.', '-'`);
    }
    const args = input.args ?? [];
    const kwargs = input.kwargs ?? {};
    if (!Array.isArray(args)) throw invalid('args', 'must be a JSON list');
    if (typeof kwargs !== 'object' || kwargs === null || Array.isArray(kwargs)) {
      throw invalid('kwargs', 'must be a JSON object');
    }
    for (const [field, value] of [
      ['args', args],
      ['kwargs', kwargs],
    ] as const) {
      try {
        assertJson(value, field);
      } catch (err) {
        if (err instanceof EncodeError) throw invalid(field, err.message);
        throw err;
      }
    }
    const size = Buffer.byteLength(JSON.stringify(args)) + Buffer.byteLength(JSON.stringify(kwargs));
    if (size > this.limits.maxPayloadBytes) {
      throw new TaskwireError('too_large', `args and kwargs take ${size} bytes of JSON; the limit is ${this.limits.maxPayloadBytes}`, {
        reason: 'PAYLOAD_TOO_LARGE',
        violations: [{ field: 'args', description: `over ${this.limits.maxPayloadBytes} bytes` }],
      });
    }
    for (const [field, value] of [
      ['exclusive_key', input.exclusiveKey],
      ['idempotency_key', input.idempotencyKey],
    ] as const) {
      if (value !== undefined && value !== '' && !KEY_TEXT.test(value)) {
        throw invalid(field, 'must be 1 to 200 characters without control characters');
      }
    }
    if (input.notBefore !== undefined && input.countdownMs !== undefined) {
      throw invalid('countdown', 'give either not_before or countdown, not both');
    }
    if (input.countdownMs !== undefined && input.countdownMs < 0) throw invalid('countdown', 'must not be negative');
    if (input.countdownMs !== undefined && input.countdownMs > START_LIMITS.maxDelayMs) {
      throw invalid('countdown', `must be at most ${days(START_LIMITS.maxDelayMs)}`);
    }
    if (input.notBefore !== undefined && input.notBefore > now + START_LIMITS.maxDelayMs) {
      throw invalid('not_before', `must be at most ${days(START_LIMITS.maxDelayMs)} ahead`);
    }
    const notBefore = input.notBefore ?? (input.countdownMs ? now + input.countdownMs : undefined);
    if (input.expiresAt !== undefined && input.expiresAt <= now) {
      throw invalid('expires_at', 'is in the past: the task would never run');
    }
    if (input.expiresAt !== undefined && notBefore !== undefined && input.expiresAt <= notBefore) {
      throw invalid('expires_at', 'is before the task may start (not_before / countdown)');
    }
    if (input.timeLimitMs !== undefined && input.timeLimitMs <= 0) throw invalid('time_limit', 'must be positive');
    if (input.timeLimitMs !== undefined && input.timeLimitMs > START_LIMITS.maxTimeLimitMs) {
      throw invalid('time_limit', `must be at most ${days(START_LIMITS.maxTimeLimitMs)}`);
    }
    for (const [field, value] of [
      ['retry.initial_backoff', input.initialBackoffMs],
      ['retry.max_backoff', input.maxBackoffMs],
    ] as const) {
      if (value === undefined) continue;
      if (!(value >= 0)) throw invalid(field, 'must not be negative');
      if (value > START_LIMITS.maxBackoffMs) throw invalid(field, `must be at most ${days(START_LIMITS.maxBackoffMs)}`);
    }
    const maxAttempts = input.maxAttempts || def.maxAttempts || TASK_DEFAULTS.maxAttempts;
    if (!Number.isInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > 1000) {
      throw invalid('retry.max_attempts', 'must be from 1 to 1000');
    }
    return {
      id: newTaskId(this.partitions.pick(queue, partitionKey || input.exclusiveKey || input.idempotencyKey)),
      name: def.name,
      queue,
      state: 'PENDING',
      args,
      kwargs,
      attempt: 0,
      maxAttempts,
      version: 0,
      exclusiveKey: input.exclusiveKey || undefined,
      idempotencyKey: input.idempotencyKey || undefined,
      createdAt: now,
      updatedAt: now,
      notBefore: notBefore && notBefore > now ? notBefore : undefined,
      expiresAt: input.expiresAt,
      timeLimitMs: input.timeLimitMs ?? def.timeLimitMs,
      initialBackoffMs: input.initialBackoffMs ?? def.initialBackoffMs,
      maxBackoffMs: input.maxBackoffMs ?? def.maxBackoffMs,
      retryOn: input.retryOn?.length ? input.retryOn : def.retryOn,
      traceparent: input.traceparent,
    };
  }

  /** `signal`: the caller's deadline or cancel; a Start it ends writes nothing. */
  async start(input: StartInput, signal?: AbortSignal): Promise<StartResult> {
    const task = this.prepare(input);
    await noteQueue(this.redis, this.queueOf(task.id));
    const key = task.exclusiveKey;
    if (!key) {
      const outcome = await this.batcher.enqueue(task);
      if (outcome.created) return { task: { ...task, version: outcome.version }, created: true };
      return { task: await this.get(outcome.existingId), created: false };
    }
    // The seed's guard: a redlock lock around check-and-start. The script re-checks the
    // holder atomically, so even a lock that expired mid-way cannot admit two tasks.
    return this.guard.create(this.queueOf(task.id), key, (holder) => this.enqueue(task, holder), signal);
  }

  /** A task with an exclusive key: created only if `holder` still holds the key. */
  private async enqueue(task: TaskRecord, holder: string): Promise<StartResult | undefined> {
    const q = this.queueOf(task.id);
    const ekey = task.exclusiveKey ?? '';
    const call = enqueueCall(q, [{ task, fields: newRecordFields(task), holder }], this.limits);
    const reply = (await runScript(this.redis, 'enqueue', call.keys, call.args)) as [string, string | number];
    return createOutcome(
      'enqueue',
      reply,
      ekey,
      async () => ({ ...task, version: Number(reply[1]) }),
      (id) => this.get(id),
    );
  }

  /** The id a request refers to: its id, or the latest task started (for its key). */
  async resolve(ref: TaskRef): Promise<string> {
    if (ref.id) return ref.id;
    const queue = ref.queue || DEFAULT_QUEUE;
    if (!isValidQueueName(queue)) throw invalid('queue', `${quote(queue)} is not a queue name`);
    const id = ref.exclusiveKey
      ? await this.redis.get(keys.latestForKey(this.partitions.pick(queue, ref.exclusiveKey), ref.exclusiveKey))
      : await this.latestOf(queue);
    if (!id) {
      throw notFound(
        ref.exclusiveKey
          ? `no task has been started with exclusive key ${quote(ref.exclusiveKey)} on queue "${queue}"`
          : `no task has been started on queue "${queue}" yet; give a task id`,
      );
    }
    return id;
  }

  /** The newest of the latest tasks of the queue's partitions: one read per partition, each of one slot. */
  private async latestOf(queue: string): Promise<string | undefined> {
    const ids = await Promise.all(this.partitions.of(queue).map((p) => this.redis.get(keys.latest(p))));
    let newest: string | undefined;
    for (const id of ids) if (id && (newest === undefined || idTime(id) > idTime(newest))) newest = id;
    return newest;
  }

  /** The queue a task id's keys are tagged with (its partition), or INVALID_ARGUMENT. */
  queueOf(id: string): string {
    const queue = queueOf(id);
    if (!queue) throw invalid('id', `${quote(id)} is not a task id`);
    return queue;
  }

  async getHash(id: string): Promise<Hash> {
    const hash = await this.redis.hgetall(keys.task(this.queueOf(id), id));
    if (!hash.state) {
      throw notFound(`no task with id ${id} (unknown, or its record expired after the result TTL)`, { task_id: id });
    }
    return hash;
  }

  async get(id: string): Promise<TaskRecord> {
    return parseRecord(await this.getHash(id));
  }

  async cancel(id: string, terminate: boolean, reason: string): Promise<{ outcome: CancelOutcome; task: TaskRecord }> {
    const queue = this.queueOf(id);
    // Most tasks have no exclusive key: the first call names none, and one that has is
    // called again with the key the record names (the script must be given every key).
    let reply = await this.cancelScript(queue, id, terminate, reason, '');
    if (reply[0] === 'exclusive') reply = await this.cancelScript(queue, id, terminate, reason, String(reply[1]));
    if (reply[0] === 'missing') {
      throw notFound(`no task with id ${id} (unknown, or its record expired after the result TTL)`, { task_id: id });
    }
    if (reply[0] === 'workflow') {
      // The workflow is REVOKED, so nothing more of it starts: now its tasks that have not
      // finished (each ends REVOKED, or is told to stop if it runs).
      const live = await this.workflows.live(queue, id);
      await Promise.all(live.map((child) => this.cancel(child, terminate, reason).catch(() => undefined)));
      return { outcome: 'revoked', task: parseRecord(pairsToHash(reply[1]!)) };
    }
    // The record as the cancel left it: what this request did, not what happened after.
    return { outcome: reply[0] as CancelOutcome, task: parseRecord(pairsToHash(reply[1]!)) };
  }

  private async cancelScript(queue: string, id: string, terminate: boolean, reason: string, ekey: string): Promise<[string, string[]?]> {
    return (await runScript(this.redis, 'cancel', cancelKeys(queue, id, ekey), [
      id,
      Date.now(),
      terminate ? 'terminate' : 'abort',
      reason,
      channels.events(queue),
      this.limits.eventLogCap,
      this.limits.resultTtlMs,
      channels.control(queue),
      ekey,
    ])) as [string, string[]?];
  }

  /** The change snapshots of versions after `afterVersion`, oldest first. */
  async readLog(id: string, afterVersion: number): Promise<Hash[]> {
    const entries = (await this.redis.xrange(keys.events(this.queueOf(id), id), `${afterVersion + 1}-0`, '+')) as [string, string[]][];
    return entries.map(([, fields]) => pairsToHash(fields));
  }

  /**
   * Tasks of one queue, newest first, filtered. Each partition's index is scored by creation
   * time; a partitioned queue's pages merge its partitions' indexes, newest first. The page
   * token holds an offset in each index (one offset, as a decimal, for a queue of one
   * partition); `createdAfter` ends an index's scan at its first older task.
   */
  async list(query: ListQuery): Promise<ListPage> {
    const queue = query.queue || DEFAULT_QUEUE;
    if (!isValidQueueName(queue)) throw invalid('queue', `${quote(queue)} is not a queue name`);
    const pageSize = Math.min(query.pageSize || 50, 500);
    const parts = this.partitions.of(queue);
    let offsets = parts.map(() => 0);
    if (query.pageToken) {
      // A token is exactly what a previous page wrote: base64url of decimal offsets joined by
      // '.'. Anything else (which Buffer.from would decode leniently, often to nothing, read
      // as offset 0) is refused rather than silently restarting the listing.
      const text = Buffer.from(query.pageToken, 'base64url').toString();
      const read = /^\d{1,15}(\.\d{1,15})*$/.test(text) ? text.split('.').map(Number) : [];
      if (read.length === 0 || !read.every(Number.isSafeInteger) || Buffer.from(text).toString('base64url') !== query.pageToken) {
        throw invalid('page_token', 'is not a token from a previous response: leave it empty for the first page');
      }
      if (read.length !== parts.length) {
        throw invalid(
          'page_token',
          read.length > 1 && parts.length > 1
            ? `was written for ${read.length} partitions of queue "${queue}", which now has ${parts.length}: leave it empty for the first page`
            : 'is not a token from a previous response: leave it empty for the first page',
        );
      }
      offsets = read;
    }
    const token = () => Buffer.from(offsets.join('.')).toString('base64url');
    const states = new Set(query.states ?? []);
    const tasks: TaskRecord[] = [];
    const chunk = Math.max(Math.ceil(Math.max(pageSize, 100) / parts.length), 10);
    // Per partition: the entries read but not yet taken (from its offset on), and whether
    // its index has nothing more to give.
    const read: { id: string; score: number; hash: Hash | undefined }[][] = parts.map(() => []);
    const done = parts.map(() => false);
    const fill = async (p: number) => {
      const partition = parts[p]!;
      const flat = await this.redis.zrevrange(keys.index(partition), offsets[p]!, offsets[p]! + chunk - 1, 'WITHSCORES');
      const entries: { id: string; score: number }[] = [];
      for (let i = 0; i < flat.length; i += 2) {
        const score = Number(flat[i + 1]);
        if (query.createdAfter !== undefined && score < query.createdAfter) break;
        entries.push({ id: flat[i]!, score });
      }
      if (entries.length < flat.length / 2 || flat.length === 0) done[p] = true;
      // One pipeline per partition: its records share the partition's hash tag.
      const pipe = this.redis.pipeline();
      for (const e of entries) pipe.hgetall(keys.task(partition, e.id));
      const hashes = entries.length ? ((await pipe.exec()) ?? []).map(([, h]) => h as Hash) : [];
      read[p] = entries.map((e, i) => ({ ...e, hash: hashes[i] }));
    };
    for (;;) {
      await Promise.all(parts.map((_, p) => (read[p]!.length === 0 && !done[p] ? fill(p) : undefined)));
      let p = -1;
      for (let i = 0; i < parts.length; i++) {
        const head = read[i]![0];
        if (!head) continue;
        const best = p < 0 ? undefined : read[p]![0]!;
        if (!best || head.score > best.score || (head.score === best.score && head.id > best.id)) p = i;
      }
      if (p < 0) return { tasks, nextPageToken: '' };
      const { hash: h } = read[p]!.shift()!;
      offsets[p]!++;
      if (!h?.state) continue;
      if (states.size && !states.has(h.state as State)) continue;
      if (query.name && h.name !== query.name) continue;
      tasks.push(parseRecord(h));
      if (tasks.length === pageSize) return { tasks, nextPageToken: token() };
    }
  }
}

/**
 * What a create script's reply (enqueue, workflow_start) means to its caller: the record
 * created (`created()` gives it), the one an idempotency key already named, a refusal when
 * an unfinished task or workflow holds the exclusive key, or undefined when the holder
 * changed since the caller looked (it looks again).
 */
export async function createOutcome(
  script: string,
  reply: [string, string | number],
  ekey: string,
  created: () => Promise<TaskRecord>,
  get: (id: string) => Promise<TaskRecord>,
): Promise<StartResult | undefined> {
  switch (reply[0]) {
    case 'created':
      return { task: await created(), created: true };
    case 'duplicate':
      return { task: await get(String(reply[1])), created: false };
    case 'exists':
      throw exclusiveTaken(ekey, String(reply[1]));
    case 'moved':
      return undefined;
    case 'id_taken':
      throw new Error(`task id ${String(reply[1])} already exists`);
    default:
      throw new Error(`${script} script replied ${String(reply[0])}`);
  }
}

/** The refusal of a create (a task or a workflow) whose exclusive key an unfinished task or workflow holds. */
function exclusiveTaken(ekey: string, holder: string): TaskwireError {
  return new TaskwireError(
    'exists',
    `a task with exclusive key ${quote(ekey)} is already running (task ${holder}); start another when it has finished`,
    {
      reason: 'EXCLUSIVE_TASK_RUNNING',
      metadata: { running_task_id: holder, exclusive_key: ekey },
    },
  );
}
