/**
 * Group commit for Start. The tasks started on one queue within one turn of the event loop
 * (concurrent Start calls, or the items of one StartMany) go to Redis as one
 * `enqueue_batch` script call, in order, instead of one script call each: the per-call cost
 * of a script in Redis (argument parsing, Lua call set-up, reply) is paid once for them all.
 * A lone Start waits only for the end of the current tick. Each task is still created whole
 * or refused with nothing written, and each caller gets its own outcome.
 */
import type { RedisClient } from '../redis.js';
import { KeyedBatcher } from './keyedBatcher.js';
import { channels, keys, taskKeyParts } from './keys.js';
import { newRecordFields, type TaskRecord } from './record.js';
import { runScript } from './scripts.js';

export type BatchOutcome = { created: true; version: number } | { created: false; existingId: string };

interface NewTask {
  task: TaskRecord;
  fields: string[];
}

export interface BatchLimits {
  resultTtlMs: number;
  eventLogCap: number;
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

  /** Create `task` (its id is new) unless its idempotency key already names a task. */
  enqueue(task: TaskRecord): Promise<BatchOutcome> {
    return this.batcher.add(task.queue, { task, fields: newRecordFields(task) });
  }

  private async send(queue: string, batch: NewTask[]): Promise<(BatchOutcome | Error)[]> {
    const now = Date.now();
    const parts = taskKeyParts(queue);
    const keyList = [keys.stream(queue), keys.scheduled(queue), keys.index(queue), keys.latest(queue)];
    const tasks = batch.map(({ task, fields }) => [task.id, String(task.createdAt), String(task.notBefore ?? 0), task.idempotencyKey ?? '', fields]);
    const args: (string | number)[] = [
      now,
      channels.events(queue),
      this.limits.eventLogCap,
      this.limits.resultTtlMs,
      channels.control(queue),
      parts.task,
      parts.eventsSuffix,
      parts.idempotency,
      JSON.stringify(tasks),
    ];
    const reply = (await runScript(this.redis, 'enqueue_batch', keyList, args)) as (string | number)[];
    return batch.map(({ task }, i) => {
      const [status, value] = [reply[2 * i], reply[2 * i + 1]];
      if (status === 'created') return { created: true, version: Number(value) };
      if (status === 'duplicate') return { created: false, existingId: String(value) };
      return new Error(`enqueue_batch refused task ${task.id}: ${String(status)} ${String(value)}`);
    });
  }
}
