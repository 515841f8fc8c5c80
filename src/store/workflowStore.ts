/**
 * Workflows in Redis: StartWorkflow (check and compile the tree, then one script writes the
 * workflow's record and plan and creates its first tasks), the workflow's tasks for
 * GetStatus, and the tasks a cancel of the workflow must reach. Advancing a workflow is not
 * done here: the scripts that end a task do it (workflow.lua).
 */
import calculateSlot from 'cluster-key-slot';
import { Cluster } from 'ioredis';
import type { RedisClient } from '../redis.js';
import { noteQueue } from './queueRegistry.js';
import { invalid, quote } from '../errors.js';
import { DEFAULT_QUEUE, isValidQueueName, newTaskId, type QueuePartitions, queueName, queueOf } from '../ids.js';
import { randomBytes } from '../random.js';
import { ExclusiveGuard } from './exclusiveGuard.js';
import { channels, keys, taskKeyParts } from './keys.js';
import { newRecordFields, type TaskRecord } from './record.js';
import { runScript } from './scripts.js';
import { createOutcome, KEY_TEXT, type StartInput, type StartResult, type StoreLimits } from './taskStore.js';
import { compilePlan, type StepInput } from './workflowPlan.js';

export interface WorkflowInput {
  root?: StepInput;
  /** The queue of the workflow's own record (default "default"). */
  queue?: string;
  idempotencyKey?: string;
  exclusiveKey?: string;
  /** W3C traceparent for the workflow's tasks. */
  traceparent?: string;
}

/** The name of every workflow's record. */
export const WORKFLOW_NAME = 'workflow';

export class WorkflowStore {
  private readonly guard: ExclusiveGuard;

  constructor(
    private readonly redis: RedisClient,
    private readonly limits: StoreLimits,
    private readonly partitions: QueuePartitions,
    private readonly prepare: (input: StartInput, partitionKey: string) => TaskRecord,
    private readonly get: (id: string) => Promise<TaskRecord>,
  ) {
    this.guard = new ExclusiveGuard(redis);
  }

  async start(input: WorkflowInput, signal?: AbortSignal): Promise<StartResult> {
    const queue = input.queue || DEFAULT_QUEUE;
    if (!isValidQueueName(queue)) {
      throw invalid('queue', `${quote(queue)} is not a queue name: use 1 to 64 letters, digits, '_', '.', '-'`);
    }
    for (const [field, value] of [
      ['exclusive_key', input.exclusiveKey],
      ['idempotency_key', input.idempotencyKey],
    ] as const) {
      if (value && !KEY_TEXT.test(value)) throw invalid(field, 'must be 1 to 200 characters without control characters');
    }
    // Of a partitioned queue, the workflow and its tasks go to the partition this key maps to:
    // its exclusive or idempotency key's, so those guarantees hold, else one drawn at random.
    const partitionKey = input.exclusiveKey || input.idempotencyKey || randomBytes(8).toString('hex');
    const plan = compilePlan(input.root, (task) => this.prepare({ ...task, traceparent: input.traceparent }, partitionKey));
    const now = Date.now();
    const workflow: TaskRecord = {
      id: newTaskId(this.partitions.pick(queue, partitionKey)),
      name: WORKFLOW_NAME,
      queue,
      state: 'PENDING',
      args: [],
      kwargs: {},
      attempt: 0,
      maxAttempts: 1,
      version: 0,
      exclusiveKey: input.exclusiveKey || undefined,
      idempotencyKey: input.idempotencyKey || undefined,
      createdAt: now,
      updatedAt: now,
      progress: { done: 0, total: plan.tasks },
      traceparent: input.traceparent,
    };
    const id = workflow.id;
    // The keys of the workflow's own record: its partition's.
    const wq = this.partitions.pick(queue, partitionKey);
    // A step creates the next step's tasks in the script that ends it: on a Redis Cluster one
    // script may touch one slot only, so every step must be in the workflow's own slot.
    if (this.redis instanceof Cluster) {
      const other = [...plan.queues].find((q) => calculateSlot(keys.task(q, '')) !== calculateSlot(keys.task(wq, '')));
      if (other !== undefined) {
        throw invalid(
          'root',
          `on a Redis Cluster every task of a workflow runs in the workflow's queue ("${queue}"), and a step is in queue "${queueName(other)}": give the steps the workflow's queue`,
        );
      }
    }
    for (const q of new Set([wq, ...plan.queues])) await noteQueue(this.redis, q);
    const qs: Record<string, Record<string, string>> = {};
    for (const q of plan.queues) {
      const parts = taskKeyParts(q);
      qs[q] = {
        t: parts.task,
        ev: parts.eventsSuffix,
        s: keys.stream(q),
        z: keys.scheduled(q),
        x: keys.index(q),
        c: channels.events(q),
        o: channels.control(q),
      };
    }
    const meta = JSON.stringify({
      id,
      r: keys.task(wq, id),
      e: keys.events(wq, id),
      c: channels.events(wq),
      xp: taskKeyParts(wq).exclusive,
      res: keys.workflowResults(wq, id),
      kids: keys.workflowChildren(wq, id),
      live: keys.workflowLive(wq, id),
      cap: String(this.limits.eventLogCap),
      ttl: String(this.limits.resultTtlMs),
      n: plan.tasks,
      qs,
    });
    const fields = [...newRecordFields(workflow), 'progress', JSON.stringify(workflow.progress), 'workflow', keys.workflowPlan(wq, id)];
    const nodes = plan.nodes.map((n) => JSON.stringify(n));
    const send = (holder: string) => this.send(workflow, holder, fields, meta, nodes);

    const key = workflow.exclusiveKey;
    if (!key) {
      const result = await send('');
      if (!result) throw new Error('workflow_start moved without an exclusive key');
      return result;
    }
    return this.guard.create(wq, key, send, signal);
  }

  private async send(wf: TaskRecord, holder: string, fields: string[], meta: string, nodes: string[]): Promise<StartResult | undefined> {
    const q = queueOf(wf.id) ?? wf.queue;
    const ekey = wf.exclusiveKey ?? '';
    const ikey = wf.idempotencyKey ?? '';
    const reply = (await runScript(
      this.redis,
      'workflow_start',
      [
        keys.task(q, wf.id),
        keys.events(q, wf.id),
        keys.index(q),
        keys.latest(q),
        keys.exclusive(q, ekey),
        keys.latestForKey(q, ekey),
        keys.idempotency(q, ikey),
        keys.task(q, holder),
        keys.workflowPlan(q, wf.id),
      ],
      [
        wf.id,
        wf.createdAt,
        channels.events(q),
        this.limits.eventLogCap,
        this.limits.resultTtlMs,
        ekey,
        ikey,
        holder,
        fields.length,
        ...fields,
        meta,
        ...nodes,
      ],
    )) as [string, string | number];
    // Read back once created: its first tasks may have moved it on already.
    return createOutcome(
      'workflow_start',
      reply,
      ekey,
      () => this.get(wf.id),
      (id) => this.get(id),
    );
  }

  /** The ids of a workflow's tasks, in the order they were created. */
  children(queue: string, id: string): Promise<string[]> {
    return this.redis.lrange(keys.workflowChildren(queue, id), 0, -1);
  }

  /** The ids of a workflow's tasks that have not finished. */
  live(queue: string, id: string): Promise<string[]> {
    return this.redis.smembers(keys.workflowLive(queue, id));
  }
}
