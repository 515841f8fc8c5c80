/**
 * Following one task's changes from its first version, for fault tests: step through the
 * watch until a condition holds (then act: kill a worker, restart Redis…), and finish
 * with every version the task went through. The client's watch resumes by itself from the
 * last version seen after a dropped stream, so a Redis restart does not end it.
 */
import { TaskState, type Task, type TaskwireClient } from '../../src/client/index.js';

export class Follow {
  readonly seen: Task[] = [];
  private readonly stream: AsyncGenerator<Task>;

  constructor(client: TaskwireClient, id: string) {
    this.stream = client.watch(id, { afterVersion: 0, maxRetries: 60 });
  }

  /** Read changes until `pred` holds for one; that one. Fails when the watch ends first. */
  async until(pred: (t: Task) => boolean, what = 'the expected change'): Promise<Task> {
    for (;;) {
      const next = await this.stream.next();
      if (next.done) {
        throw new Error(`the watch ended before ${what}; seen: ${this.seen.map(describe).join(' → ')}`);
      }
      this.seen.push(next.value);
      if (pred(next.value)) return next.value;
    }
  }

  /** Read to the end (a terminal state); every version seen. */
  async end(): Promise<Task[]> {
    for (;;) {
      const next = await this.stream.next();
      if (next.done) return this.seen;
      this.seen.push(next.value);
    }
  }

  get last(): Task | undefined {
    return this.seen.at(-1);
  }
}

export const isState = (state: TaskState) => (t: Task) => t.state === state;

/** "STARTED#2@w1" — a change, shortly, for assertion messages. */
export function describe(t: Task): string {
  return `v${t.version} ${TaskState[t.state]}#${t.attempt}${t.worker ? `@${t.worker}` : ''}`;
}

/** The states a task went through, in order. */
export function states(seen: readonly Task[]): string[] {
  return seen.map((t) => TaskState[t.state]);
}

/** Every task's versions must be 1, 2, 3… with none missing or repeated. */
export function versions(seen: readonly Task[]): number[] {
  return seen.map((t) => Number(t.version));
}

export function oneToN(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i + 1);
}
