/**
 * Every Redis key and channel name taskwire uses, and nothing else builds one.
 *
 * Keys carry their queue in a hash tag (`taskwire:{default}:…`) so that each Lua script
 * touches a single Redis Cluster slot; many queues spread over many shards.
 */

const PREFIX = 'taskwire';

/** `taskwire:{<queue>}:` — the prefix of every key of one queue. */
export function queuePrefix(queue: string): string {
  return `${PREFIX}:{${queue}}:`;
}

export const keys = {
  /** Stream of messages waiting for a worker (consumer group {@link CONSUMER_GROUP}). */
  stream: (queue: string) => `${queuePrefix(queue)}stream`,
  /** Sorted set of `id\nexclusiveKey` waiting for a countdown or a retry backoff; score = due ms. */
  scheduled: (queue: string) => `${queuePrefix(queue)}scheduled`,
  /** Hash: the record of one task. */
  task: (queue: string, id: string) => `${queuePrefix(queue)}t:${id}`,
  /** Capped stream: the task's change log, entry id `<version>-0`. */
  events: (queue: string, id: string) => `${queuePrefix(queue)}t:${id}:events`,
  /** Hash: a worker's replies to its latest attempt-n.lua calls on the queue, by nonce, so
   * that a call sent again after its reply was lost is answered the same. */
  replies: (queue: string, worker: string) => `${queuePrefix(queue)}replies:${worker}`,
  /** Hash: the queue's outcome counters and time histograms, kept by the scripts that write
   * a task's state and read by /metrics (fields: `count_end` in scripts/lib.lua, store/stats.ts). */
  stats: (queue: string) => `${queuePrefix(queue)}stats`,
  /** Sorted set of task ids by creation time (ms), for listing. */
  index: (queue: string) => `${queuePrefix(queue)}index`,
  /** String: id of the latest task started on the queue. */
  latest: (queue: string) => `${queuePrefix(queue)}latest`,
  /** String: id of the latest task started with an exclusive key. */
  latestForKey: (queue: string, exclusiveKey: string) => `${queuePrefix(queue)}latest:${exclusiveKey}`,
  /** String: id of the non-terminal task holding an exclusive key. */
  exclusive: (queue: string, exclusiveKey: string) => `${queuePrefix(queue)}excl:${exclusiveKey}`,
  /** Redlock resource guarding check-and-start of one exclusive key. */
  exclusiveLock: (queue: string, exclusiveKey: string) => `${queuePrefix(queue)}lock:excl:${exclusiveKey}`,
  /** String: id of the task started with an idempotency key. */
  idempotency: (queue: string, idempotencyKey: string) => `${queuePrefix(queue)}idem:${idempotencyKey}`,
  /** Hash: a workflow's plan, the compiled node table: field = node index, value = the node
   * as JSON (workflow.lua reads only the nodes it advances through); field `meta` = the key
   * names and limits its scripts use. */
  workflowPlan: (queue: string, id: string) => `${queuePrefix(queue)}t:${id}:plan`,
  /** Hash: a workflow's group members' results by node index, and per group its count of
   * finished members (`#<node>`), read once when the group completes. */
  workflowResults: (queue: string, id: string) => `${queuePrefix(queue)}t:${id}:results`,
  /** List: the ids of a workflow's tasks, in the order they were created (Task.children). */
  workflowChildren: (queue: string, id: string) => `${queuePrefix(queue)}t:${id}:children`,
  /** Set: the ids of a workflow's tasks that have not finished, for a cancel of the workflow. */
  workflowLive: (queue: string, id: string) => `${queuePrefix(queue)}t:${id}:live`,
  /** String written by each API server's health probe: Redis is SERVING only while it takes writes. */
  health: () => `${PREFIX}:health`,
  /** Set of queue names that have ever been used (a process adds a queue before it first
   * creates a task there, and announces it on {@link channels.queueAdded}). */
  queues: () => `${PREFIX}:queues`,
  /** Hash: one periodic schedule (its definition, next and last run, counters), kept in the
   * queue of the task it starts so that a tick's check and its run are one script. */
  schedule: (queue: string, id: string) => `${queuePrefix(queue)}schedule:${id}`,
  /** Sorted set of the queue's schedule ids that take part in ticking; score = next run (ms). */
  schedules: (queue: string) => `${queuePrefix(queue)}schedules`,
  /** Hash: schedule id → its queue, to find a schedule by id and to list them all. */
  scheduleRegistry: () => `${PREFIX}:schedules`,
} as const;

/**
 * The parts of a task's key names, for a workflow's plan: the step that ends a task creates
 * the next step's tasks, whose ids only the plan holds, so workflow.lua names their keys from
 * these (record = task + id, event log = task + id + eventsSuffix, exclusive = exclusive +
 * key). Every other script is given its keys in KEYS.
 */
export function taskKeyParts(queue: string): { task: string; eventsSuffix: string; exclusive: string } {
  const task = keys.task(queue, '');
  return {
    task,
    eventsSuffix: keys.events(queue, '').slice(task.length),
    exclusive: keys.exclusive(queue, ''),
  };
}

/** What cancel-9.lua is given, in its KEYS order: the task's record, log, queue's scheduled
 * set, the exclusive key `exclusiveKey` names ('' when none), a workflow's plan, results,
 * children and live set (written only when the id is a workflow's), the queue's stats. */
export function cancelKeys(queue: string, id: string, exclusiveKey: string): string[] {
  return [
    keys.task(queue, id),
    keys.events(queue, id),
    keys.scheduled(queue),
    keys.exclusive(queue, exclusiveKey),
    keys.workflowPlan(queue, id),
    keys.workflowResults(queue, id),
    keys.workflowChildren(queue, id),
    keys.workflowLive(queue, id),
    keys.stats(queue),
  ];
}

export const channels = {
  /** Sharded pub/sub, in the queue's hash slot: every change of every task of the queue
   * (payload: the task log entry, as a JSON list of name, value: the whole record or only the
   * fields the change wrote, `log_change` and `log_written` in scripts/lib.lua). Subscribed
   * only while a watch of the queue is open. */
  events: (queue: string) => `${queuePrefix(queue)}events`,
  /** Sharded pub/sub, in the queue's hash slot: cancel requests for running tasks of the
   * queue (payload: task id) and countdown announcements. */
  control: (queue: string) => `${queuePrefix(queue)}control`,
  /** Sharded pub/sub: the name of a queue just added to {@link keys.queues}, so that a
   * WatchEvents of every queue subscribes to it before its first task is created. */
  queueAdded: () => `${PREFIX}:queues:added`,
} as const;

/** The consumer group every worker of a queue reads through. */
export const CONSUMER_GROUP = 'workers';
