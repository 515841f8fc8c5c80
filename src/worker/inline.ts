/**
 * Tasks defined with `inline: true` run on the worker's main thread: no post to a handler
 * thread and back, which is most of a short task's cost in the worker. Nothing can stop a
 * handler on the main thread by force, so a kill (terminate, hard time limit, shutdown)
 * fires its AbortSignal and settles its outcome as killed at once, and whatever the handler
 * returns afterwards is discarded; its slot stays taken until the handler has returned
 * (`running`), so the worker never runs more handlers than it has slots.
 */
import type { TaskRegistry } from '../tasks/define.js';
import { Cancellation, type Execution, execute } from './execute.js';
import type { KillReason, Outcome } from './job.js';
import type { Run } from './threads.js';

/** A task run inline: a Run, and the handler itself, which may outlive a kill. */
export interface InlineRun extends Run {
  /** Resolves when the handler has returned; undefined once it has. */
  running(): Promise<void> | undefined;
}

const KILLED: Record<KillReason, string> = {
  terminate: 'the task was terminated',
  time_limit: 'the task ran past its hard time limit',
  shutdown: 'the worker is shutting down',
};

export class InlineHandlers {
  constructor(
    private readonly registry: TaskRegistry,
    private readonly names: ReadonlySet<string>,
  ) {}

  has(name: string): boolean {
    return this.names.has(name);
  }

  submit(message: Execution, onProgress: (json: string) => void): InlineRun {
    const cancellation = new Cancellation(message.id);
    let settle!: (o: Outcome) => void;
    const outcome = new Promise<Outcome>((r) => (settle = r));
    let settled = false;
    const finish = (o: Outcome) => {
      if (settled) return;
      settled = true;
      settle(o);
    };
    let returned = false;
    // Begun from a microtask: the handler's synchronous part runs after the caller has
    // its Run (a cancel may find it), not inside the caller's frame.
    const handler = Promise.resolve()
      .then(() => execute(this.registry, message, cancellation, (json) => settled || onProgress(json)))
      .then((done) => {
        returned = true;
        finish(done.error ? { kind: 'threw', error: done.error } : { kind: 'returned', result: done.result });
      });
    return {
      outcome,
      abort: (reason) => cancellation.abort(reason),
      kill: (why) => {
        if (settled) return;
        cancellation.abort(KILLED[why]);
        finish({ kind: 'killed', why });
      },
      running: () => (returned ? undefined : handler),
    };
  }
}
