/**
 * Group commit for Start. The tasks started on one queue within one turn of the event loop
 * (concurrent Start calls, or the items of one StartMany) go to Redis as one
 * `enqueue_batch` script call, in order, instead of one script call each: the per-call cost
 * of a script in Redis (argument parsing, Lua call set-up, reply) is paid once for them all.
 * A lone Start waits only for the end of the current tick. Each task is still created whole
 * or refused with nothing written, and each caller gets its own outcome.
 */
import type { Redis } from 'ioredis';
import { channels, keys } from './keys.js';
import { newRecordFields, type TaskRecord } from './record.js';
import { runScript } from './scripts.js';

export type BatchOutcome = { created: true; version: number } | { created: false; existingId: string };

interface Pending {
  task: TaskRecord;
  fields: string[];
  resolve: (outcome: BatchOutcome) => void;
  reject: (err: unknown) => void;
}

export interface BatchLimits {
  resultTtlMs: number;
  eventLogCap: number;
}

/** At most this many tasks, or about this many bytes of fields, per script call (one call
 * blocks Redis while it runs; a few milliseconds at most). */
const MAX_TASKS = 256;
const MAX_BYTES = 1 << 20;

export class EnqueueBatcher {
  private readonly queues = new Map<string, Pending[]>();
  private scheduled = false;

  constructor(
    private readonly redis: Redis,
    private readonly limits: BatchLimits,
  ) {}

  /** Create `task` (its id is new) unless its idempotency key already names a task. */
  enqueue(task: TaskRecord): Promise<BatchOutcome> {
    return new Promise((resolve, reject) => {
      const pending = { task, fields: newRecordFields(task), resolve, reject };
      const queue = this.queues.get(task.queue);
      if (queue) queue.push(pending);
      else this.queues.set(task.queue, [pending]);
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const queues = [...this.queues];
    this.queues.clear();
    for (const [queue, pending] of queues) {
      let from = 0;
      while (from < pending.length) {
        let to = from;
        let bytes = 0;
        while (to < pending.length && to - from < MAX_TASKS && (to === from || bytes < MAX_BYTES)) {
          for (const f of pending[to]!.fields) bytes += f.length;
          to++;
        }
        const batch = pending.slice(from, to);
        this.send(queue, batch).catch((err: unknown) => {
          for (const p of batch) p.reject(err);
        });
        from = to;
      }
    }
  }

  private async send(queue: string, batch: Pending[]): Promise<void> {
    const now = Date.now();
    const keyList = [keys.stream(queue), keys.scheduled(queue), keys.index(queue), keys.latest(queue)];
    const args: (string | number)[] = [now, channels.events(queue), this.limits.eventLogCap, this.limits.resultTtlMs, channels.control(queue)];
    for (const { task, fields } of batch) {
      const ikey = task.idempotencyKey ?? '';
      keyList.push(keys.task(queue, task.id), keys.events(queue, task.id), keys.idempotency(queue, ikey));
      args.push(task.id, task.createdAt, task.notBefore ?? 0, ikey, fields.length, ...fields);
    }
    let reply: (string | number)[];
    try {
      reply = (await runScript(this.redis, 'enqueue_batch', keyList, args)) as (string | number)[];
    } catch (err) {
      for (const p of batch) p.reject(err);
      return;
    }
    batch.forEach((p, i) => {
      const [status, value] = [reply[2 * i], reply[2 * i + 1]];
      if (status === 'created') p.resolve({ created: true, version: Number(value) });
      else if (status === 'duplicate') p.resolve({ created: false, existingId: String(value) });
      else p.reject(new Error(`enqueue_batch refused task ${p.task.id}: ${String(status)} ${String(value)}`));
    });
  }
}
