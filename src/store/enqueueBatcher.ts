/**
 * Group commit for Start. The tasks started on one queue within one turn of the event loop
 * (concurrent Start calls, or the items of one StartMany) go to Redis as one
 * `enqueue` script call, in order, instead of one script call each: the per-call cost
 * of a script in Redis (argument parsing, Lua call set-up, reply) is paid once for them all.
 * A lone Start waits only for the end of the current tick. Each task is still created whole
 * or refused with nothing written, and each caller gets its own outcome.
 */
import type { RedisClient } from '../redis.js';
import { queueOf } from '../ids.js';
import { KeyedBatcher } from './keyedBatcher.js';
import { channels, keys } from './keys.js';
import { newRecordFields, type TaskRecord } from './record.js';
import { runScript } from './scripts.js';

export type BatchOutcome = { created: true; version: number } | { created: false; existingId: string };

/** A task to create: its record, its fields as written, and for a task with an exclusive key
 * the id the caller saw holding that key ('' when none). */
export interface NewTask {
  task: TaskRecord;
  fields: string[];
  holder?: string;
}

export interface BatchLimits {
  resultTtlMs: number;
  eventLogCap: number;
}

/** The KEYS and ARGV of one enqueue-n.lua call creating `tasks` of `queue`, in order. */
export function enqueueCall(queue: string, tasks: readonly NewTask[], limits: BatchLimits): { keys: string[]; args: (string | number)[] } {
  const keyList = [keys.stream(queue), keys.scheduled(queue), keys.index(queue), keys.latest(queue)];
  const list: (string | string[])[][] = [];
  for (const { task, fields, holder } of tasks) {
    const ekey = task.exclusiveKey ?? '';
    const ikey = task.idempotencyKey ?? '';
    keyList.push(keys.task(queue, task.id), keys.events(queue, task.id), keys.idempotency(queue, ikey));
    if (ekey) keyList.push(keys.exclusive(queue, ekey), keys.latestForKey(queue, ekey), keys.task(queue, holder ?? ''));
    list.push([task.id, String(task.createdAt), String(task.notBefore ?? 0), ikey, ekey, ekey ? (holder ?? '') : '', fields]);
  }
  const args = [Date.now(), channels.events(queue), limits.eventLogCap, limits.resultTtlMs, channels.control(queue), JSON.stringify(list)];
  return { keys: keyList, args };
}

export class EnqueueBatcher {
  private readonly batcher: KeyedBatcher<NewTask, BatchOutcome>;

  constructor(
    private readonly redis: RedisClient,
    private readonly limits: BatchLimits,
  ) {
    this.batcher = new KeyedBatcher({
      send: (queue, tasks) => this.send(queue, tasks),
      schedule: setImmediate,
      // One call blocks Redis while it runs: a few milliseconds at most.
      maxItems: 256,
      size: ({ fields }) => fields.reduce((n, f) => n + f.length, 0),
      maxSize: 1 << 20,
    });
  }

  /** Create `task` (its id is new, it has no exclusive key) unless its idempotency key already names a task. */
  enqueue(task: TaskRecord): Promise<BatchOutcome> {
    return this.batcher.add(queueOf(task.id) ?? task.queue, { task, fields: newRecordFields(task) });
  }

  private async send(queue: string, batch: NewTask[]): Promise<(BatchOutcome | Error)[]> {
    const call = enqueueCall(queue, batch, this.limits);
    const reply = (await runScript(this.redis, 'enqueue', call.keys, call.args)) as (string | number)[];
    return batch.map(({ task }, i) => {
      const [status, value] = [reply[2 * i], reply[2 * i + 1]];
      if (status === 'created') return { created: true, version: Number(value) };
      if (status === 'duplicate') return { created: false, existingId: String(value) };
      return new Error(`enqueue refused task ${task.id}: ${String(status)} ${String(value)}`);
    });
  }
}
