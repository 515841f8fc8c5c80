/** A workflow's tree of steps from the wire (taskwire.v1.Step) to the domain (StepInput). */
import type { Step } from '../../gen/taskwire/v1/task_service_pb.js';
import { type StepInput, WORKFLOW_LIMITS } from '../store/workflowPlan.js';
import { startInputFromWire } from './convert.js';

export function stepFromWire(step: Step | undefined, depth = 1): StepInput | undefined {
  if (!step) return undefined;
  const immutable = step.immutable || undefined;
  // Deeper than a workflow may nest: compilePlan refuses the step by its depth, before its content.
  if (depth > WORKFLOW_LIMITS.maxDepth) return { kind: 'chain', steps: [], immutable };
  const k = step.kind;
  switch (k.case) {
    case 'task':
      return { kind: 'task', task: startInputFromWire(k.value), immutable };
    case 'chain':
    case 'group':
      return { kind: k.case, steps: k.value.steps.map((s) => stepFromWire(s, depth + 1) ?? {}), immutable };
    case 'chord':
      return {
        kind: 'chord',
        header: k.value.header?.steps.map((s) => stepFromWire(s, depth + 1) ?? {}),
        body: stepFromWire(k.value.body, depth + 1),
        immutable,
      };
    default:
      return { immutable };
  }
}
