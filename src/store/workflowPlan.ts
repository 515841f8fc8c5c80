/**
 * A workflow's tree of steps (chain, group, chord, task signatures) checked and compiled,
 * before anything reaches Redis, into the flat node table workflow.lua advances through
 * (see the description of a node there). Each task signature is checked as a Start is, and
 * its record is prepared (its id included) now; the record is created when its node is reached.
 */
import { invalid, TaskwireError } from '../errors.js';
import { queueOf } from '../ids.js';
import type { JsonValue } from '../json.js';
import { newRecordFields, type TaskRecord } from './record.js';
import type { StartInput } from './taskStore.js';

/** One step of a workflow: a task signature, or a composition of steps. */
export interface StepInput {
  /** undefined: the step names none of them (refused). */
  kind?: 'task' | 'chain' | 'group' | 'chord';
  task?: StartInput;
  /** A chain's or a group's steps. */
  steps?: StepInput[];
  /** A chord's header group's steps; undefined when it has no header. */
  header?: StepInput[];
  /** A chord's body. */
  body?: StepInput;
  /** The step does not receive the previous step's result (Celery's `.si()`). */
  immutable?: boolean;
}

/** How large a workflow may be. A chord of ten thousand members fits. */
export const WORKFLOW_LIMITS = {
  maxTasks: 20_000,
  maxDepth: 32,
} as const;

export interface PlanNode {
  k: 'task' | 'chain' | 'group';
  p: number;
  pk?: 'chain' | 'group';
  nx?: number;
  sib?: number;
  im?: true;
  hc?: true;
  ch?: number[];
  q?: string;
  id?: string;
  a?: string;
  cd?: string;
  nb?: string;
  f?: string[];
}

export interface Plan {
  nodes: PlanNode[];
  /** The queues the tasks use. */
  queues: Set<string>;
  tasks: number;
  /** The ids of the tasks, by node index (undefined for a composition). */
  taskIds: (string | undefined)[];
}

/** Fields every task record of a workflow gets from workflow.lua at creation instead. */
const SET_AT_CREATION = new Set(['id', 'args', 'created', 'updated', 'not_before']);

/**
 * Check and compile `root`. `prepare` is the Start's check of one signature (TaskStore.prepare);
 * an error it raises is reported at the signature's path in the tree.
 */
export function compilePlan(root: StepInput | undefined, prepare: (input: StartInput) => TaskRecord): Plan {
  const nodes: PlanNode[] = [];
  const queues = new Set<string>();
  let tasks = 0;
  if (!root) throw invalid('root', "is required: the workflow's first step (a task, chain, group or chord)");

  const visit = (step: StepInput, path: string, depth: number, parent: Omit<PlanNode, 'k'>): number => {
    if (depth > WORKFLOW_LIMITS.maxDepth) {
      throw invalid(path, `is nested too deep: a workflow may nest steps ${WORKFLOW_LIMITS.maxDepth} levels deep at most`);
    }
    const i = nodes.length;
    const base: Omit<PlanNode, 'k'> = { ...parent };
    if (step.immutable) base.im = true;
    switch (step.kind) {
      case 'task': {
        if (++tasks > WORKFLOW_LIMITS.maxTasks) {
          throw invalid(path, `is one task too many: a workflow may have ${WORKFLOW_LIMITS.maxTasks} tasks at most`);
        }
        const at = `${path}.task`;
        const input = step.task ?? { name: '' };
        if (input.exclusiveKey) {
          throw invalid(`${at}.exclusive_key`, 'is not taken inside a workflow: give the workflow its exclusive_key');
        }
        if (input.idempotencyKey) {
          throw invalid(`${at}.idempotency_key`, 'is not taken inside a workflow: give the workflow its idempotency_key');
        }
        const rec = atPath(at, () => prepare(input));
        // A countdown counts from the task's creation, when its step is reached.
        const countdown = input.countdownMs ?? 0;
        // The keys of the task's partition (its queue's own when it is not partitioned).
        const q = queueOf(rec.id) ?? rec.queue;
        queues.add(q);
        nodes.push({
          k: 'task',
          ...base,
          q,
          id: rec.id,
          a: JSON.stringify(rec.args ?? ([] as JsonValue[])),
          cd: String(countdown),
          nb: String(countdown ? 0 : (rec.notBefore ?? 0)),
          f: fieldsAtCreation(rec),
        });
        return i;
      }
      case 'chain':
      case 'group': {
        const kind = step.kind;
        const list = step.steps ?? [];
        if (list.length === 0) throw invalid(`${path}.${kind}.steps`, `must not be empty: a ${kind} needs at least one step`);
        nodes.push({ k: kind, ...base });
        const inHeader = base.hc ? { hc: true as const } : {};
        const ch = list.map((s, j) =>
          visit(
            s,
            `${path}.${kind}.steps[${j}]`,
            depth + 1,
            kind === 'chain' ? { p: i, pk: 'chain', ...inHeader } : { p: i, pk: 'group', sib: list.length, ...inHeader },
          ),
        );
        if (kind === 'chain') for (let j = 0; j + 1 < ch.length; j++) nodes[ch[j]!]!.nx = ch[j + 1];
        nodes[i]!.ch = ch;
        return i;
      }
      case 'chord': {
        // A chain of the header group and the body: the body gets the header's list of results.
        const header = step.header;
        if (!header || header.length === 0) {
          throw invalid(`${path}.chord.header.steps`, 'must not be empty: a chord needs at least one step in its header');
        }
        if (!step.body) throw invalid(`${path}.chord.body`, "is required: the step that receives the header's results");
        nodes.push({ k: 'chain', ...base });
        const g = nodes.length;
        nodes.push({ k: 'group', p: i, pk: 'chain' });
        const members = header.map((s, j) =>
          visit(s, `${path}.chord.header.steps[${j}]`, depth + 1, { p: g, pk: 'group', sib: header.length, hc: true }),
        );
        nodes[g]!.ch = members;
        const body = visit(step.body, `${path}.chord.body`, depth + 1, { p: i, pk: 'chain', ...(base.hc ? { hc: true } : {}) });
        nodes[g]!.nx = body;
        nodes[i]!.ch = [g, body];
        return i;
      }
      default:
        throw invalid(path, 'must be one of task, chain, group or chord');
    }
  };
  visit(root, 'root', 1, { p: -1 });
  return { nodes, queues, tasks, taskIds: nodes.map((n) => n.id) };
}

/** The record fields of a prepared task that its node keeps (name, value pairs). */
function fieldsAtCreation(rec: TaskRecord): string[] {
  const all = newRecordFields(rec);
  const out: string[] = [];
  for (let i = 0; i < all.length; i += 2) {
    if (!SET_AT_CREATION.has(all[i]!)) out.push(all[i]!, all[i + 1]!);
  }
  return out;
}

/** Run `fn`; a field error it raises is reported at `path` (`root.chain.steps[1].task.name`). */
function atPath<T>(path: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (!(err instanceof TaskwireError)) throw err;
    const violations = err.details.violations?.map((v) => ({ field: `${path}.${v.field}`, description: v.description }));
    const field = violations?.[0]?.field ?? path;
    const message = err.kind === 'invalid' && violations?.[0] ? `${field}: ${violations[0].description}` : `${path}: ${err.message}`;
    throw new TaskwireError(err.kind, message, { ...err.details, violations });
  }
}
