/**
 * Workflows from the TypeScript client, in the shape of Celery's canvas:
 *
 *   const flow = tw.chain(tw.sig('add', 2, 2), tw.sig('add', 4), tw.sig('add', 8));
 *   const task = await flow.start();          // the workflow's own record
 *   await tw.wait(task);                      // 16
 *
 *   tw.group(...[0, 1, 2].map((k) => tw.sig('add', k, k)));          // → [0, 2, 4]
 *   tw.chord([0, 1, 2].map((k) => tw.sig('add', k, k)), tw.sig('tsum')); // → 6
 *
 * `sig(name, ...args)` is Celery's `.s()`, `signature(name, options)` takes every start
 * option (queue, countdown, retries…), and `.si()` makes a step immutable: it does not
 * receive the previous step's result.
 */
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { Task } from '../../gen/taskwire/v1/task_pb.js';
import type { StepSchema } from '../../gen/taskwire/v1/task_service_pb.js';
import type { JsonValue } from '../json.js';
import type { StartOptions, TaskwireClient } from './index.js';

export type StepInit = MessageInitShape<typeof StepSchema>;

/** How a workflow as a whole is started. */
export interface WorkflowOptions {
  /** The queue of the workflow's own record (default "default"); each task keeps its own. */
  queue?: string;
  idempotencyKey?: string;
  exclusiveKey?: string;
}

/** Start options a signature takes (the workflow's keys are the workflow's, not a step's). */
export type SignatureOptions = Omit<StartOptions, 'exclusiveKey' | 'idempotencyKey' | 'wait' | 'timeoutMs' | 'signal' | 'onHint' | 'traceparent'>;

abstract class CanvasNode {
  constructor(
    protected readonly client: TaskwireClient | undefined,
    readonly immutable: boolean,
  ) {}

  /** The step as the StartWorkflow request carries it. */
  abstract toStep(): StepInit;

  /** Start the workflow; resolves with its own record (follow it with `watch` or `wait`). */
  async start(options: WorkflowOptions = {}): Promise<Task> {
    if (!this.client) throw new Error('this workflow was built without a client: start it with client.startWorkflow(workflow)');
    return startWorkflow(this.client, this, options);
  }
}

export class Signature extends CanvasNode {
  constructor(
    client: TaskwireClient | undefined,
    readonly name: string,
    readonly options: SignatureOptions = {},
    immutable = false,
  ) {
    super(client, immutable);
  }

  /** The same signature, immutable (Celery's `.si()`): it ignores the previous result. */
  si(): Signature {
    return new Signature(this.client, this.name, this.options, true);
  }

  toStep(): StepInit {
    // StartRequest's shape, from the client's one conversion of start options.
    const request = requireClientClass().startRequest(this.name, this.options);
    return { kind: { case: 'task', value: request }, immutable: this.immutable };
  }
}

export class Chain extends CanvasNode {
  constructor(
    client: TaskwireClient | undefined,
    readonly steps: CanvasNode[],
    immutable = false,
  ) {
    super(client, immutable);
  }

  si(): Chain {
    return new Chain(this.client, this.steps, true);
  }

  toStep(): StepInit {
    return { kind: { case: 'chain', value: { steps: this.steps.map((s) => s.toStep()) } }, immutable: this.immutable };
  }
}

export class Group extends CanvasNode {
  constructor(
    client: TaskwireClient | undefined,
    readonly steps: CanvasNode[],
    immutable = false,
  ) {
    super(client, immutable);
  }

  si(): Group {
    return new Group(this.client, this.steps, true);
  }

  toStep(): StepInit {
    return { kind: { case: 'group', value: { steps: this.steps.map((s) => s.toStep()) } }, immutable: this.immutable };
  }
}

export class Chord extends CanvasNode {
  constructor(
    client: TaskwireClient | undefined,
    readonly header: CanvasNode[],
    readonly body: CanvasNode,
    immutable = false,
  ) {
    super(client, immutable);
  }

  si(): Chord {
    return new Chord(this.client, this.header, this.body, true);
  }

  toStep(): StepInit {
    return {
      kind: { case: 'chord', value: { header: { steps: this.header.map((s) => s.toStep()) }, body: this.body.toStep() } },
      immutable: this.immutable,
    };
  }
}

export type Canvas = Signature | Chain | Group | Chord;

let clientClass: typeof TaskwireClient | undefined;
/** Set by index.ts (which imports this file), so a canvas built without a client can convert. */
export function setClientClass(cls: typeof TaskwireClient): void {
  clientClass = cls;
}
function requireClientClass(): typeof TaskwireClient {
  if (!clientClass) throw new Error('taskwire/client is not loaded');
  return clientClass;
}

export async function startWorkflow(client: TaskwireClient, root: Canvas | CanvasNode, options: WorkflowOptions = {}): Promise<Task> {
  const res = await client.rpc.startWorkflow({
    root: root.toStep(),
    queue: options.queue,
    idempotencyKey: options.idempotencyKey,
    exclusiveKey: options.exclusiveKey,
  });
  return res.task!;
}

/** Builders bound to a client, as `client.chain(...)` etc. read. */
export function canvasBuilders(client: TaskwireClient | undefined) {
  return {
    /** A task signature with positional args (Celery's `add.s(2, 2)`). */
    sig: (name: string, ...args: JsonValue[]) => new Signature(client, name, { args }),
    /** A task signature with any start options. */
    signature: (name: string, options: SignatureOptions = {}) => new Signature(client, name, options),
    chain: (...steps: CanvasNode[]) => new Chain(client, steps),
    group: (...steps: CanvasNode[]) => new Group(client, steps),
    /** A group, then `body` with the group's list of results as its first argument. */
    chord: (header: CanvasNode[] | Group, body: CanvasNode) => new Chord(client, header instanceof Group ? header.steps : header, body),
  };
}

/** The builders without a client: start what they build with `client.startWorkflow(…)`. */
export const { sig, signature, chain, group, chord } = canvasBuilders(undefined);
