/**
 * Task ids and queue partitions. Ids of the default queue are bare UUIDv7s (time-ordered,
 * as Celery users expect a UUID); ids of another queue carry it as `<queue>/<uuid>`, so that
 * any id alone finds its record without a lookup.
 *
 * A partitioned queue keeps its tasks in N partitions, each a queue of its own to Redis
 * (keys tagged `{<queue>#<k>}`, so the partitions spread over Cluster slots). A task id of
 * such a queue names its partition, `<queue>#<k>/<uuid>` (`default#<k>/<uuid>` as well), so
 * it too resolves with no lookup, whatever the partition count is today.
 */
import { randomBytes } from './random.js';

export const DEFAULT_QUEUE = 'default';
const QUEUE_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
/** A queue or one partition of one: the name its keys are tagged with. */
const STORE_QUEUE = /^([A-Za-z0-9_.-]{1,64})(?:#(0|[1-9][0-9]{0,2}))?$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Most partitions a queue may have. */
export const MAX_PARTITIONS = 256;

export function isValidQueueName(queue: string): boolean {
  return QUEUE_NAME.test(queue);
}

function uuidv7(now = Date.now()): string {
  const b = randomBytes(16);
  b.writeUIntBE(now, 0, 6);
  b[6] = (b[6]! & 0x0f) | 0x70;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** A new id of a task of `queue`, or of partition `<queue>#<k>`. */
export function newTaskId(queue: string): string {
  const uuid = uuidv7();
  return queue === DEFAULT_QUEUE ? uuid : `${queue}/${uuid}`;
}

/**
 * The queue a task id's keys are tagged with (its partition, `<queue>#<k>`, for a task of a
 * partitioned queue), or undefined when the string is not a task id.
 */
export function queueOf(id: string): string | undefined {
  const slash = id.indexOf('/');
  if (slash < 0) return UUID.test(id) ? DEFAULT_QUEUE : undefined;
  const queue = id.slice(0, slash);
  return STORE_QUEUE.test(queue) && UUID.test(id.slice(slash + 1)) ? queue : undefined;
}

/** The queue's name of a partition (`emails#3` → `emails`); a queue's name is its own. */
export function queueName(partition: string): string {
  const hash = partition.indexOf('#');
  return hash < 0 ? partition : partition.slice(0, hash);
}

/** The creation time (ms) a task id's UUIDv7 carries. */
export function idTime(id: string): number {
  const uuid = id.slice(id.indexOf('/') + 1);
  return Number.parseInt(uuid.slice(0, 8) + uuid.slice(9, 13), 16);
}

/** FNV-1a of the UTF-8 bytes: the same key maps to the same partition in every process. */
function stableHash(text: string): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(text)) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/**
 * How many partitions each queue has (TASKWIRE_QUEUE_PARTITIONS), and which partition a new
 * task goes to. A queue not named, or named with 1, is not partitioned: one set of keys
 * `{<queue>}`, ids as they always were.
 */
export class QueuePartitions {
  private readonly counts: ReadonlyMap<string, number>;
  private turn = 0;

  constructor(counts: Readonly<Record<string, number>> = {}) {
    this.counts = new Map(Object.entries(counts).filter(([, n]) => n > 1));
  }

  /** The queue's partition count; 1 when it is not partitioned. */
  count(queue: string): number {
    return this.counts.get(queue) ?? 1;
  }

  /** The names a queue's keys are tagged with: its partitions, or the queue itself. */
  of(queue: string): string[] {
    const n = this.count(queue);
    return n === 1 ? [queue] : Array.from({ length: n }, (_, k) => `${queue}#${k}`);
  }

  /** Every partition of every queue in `queues`, in order: what a worker reads. */
  expand(queues: readonly string[]): string[] {
    return queues.flatMap((q) => this.of(q));
  }

  /**
   * The partition a new task of `queue` goes to: the one `key` hashes to when given (an
   * exclusive or idempotency key, whose guarantees hold within one partition), else the
   * next in turn.
   */
  pick(queue: string, key?: string): string {
    const n = this.count(queue);
    if (n === 1) return queue;
    const k = key ? stableHash(key) % n : this.turn++ % n;
    return `${queue}#${k}`;
  }
}
