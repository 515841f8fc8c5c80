/**
 * Workflows (Celery's canvas) over real gRPC and a real Redis: chain, group and chord, their
 * nesting, and the workflow followed like a task (GetStatus, WatchStatus, ListTasks).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { argsOf, resultOf, TaskState, TERMINAL, type Task, type TaskwireClient } from '../src/client/index.js';
import { startStack, type Stack } from './helpers/stack.js';

let stack: Stack;
let tw: TaskwireClient;

beforeAll(async () => {
  stack = await startStack({ workerArgs: ['--concurrency', '4'] });
  tw = stack.client;
});
afterAll(async () => {
  await stack?.stop();
});

/** Every version the watch of `id` sent, up to its terminal one. */
async function watchAll(id: string): Promise<Task[]> {
  const seen: Task[] = [];
  for await (const t of tw.watch(id, { afterVersion: 0n })) {
    seen.push(t);
    if (TERMINAL.has(t.state)) break;
  }
  return seen;
}

const range = (n: number) => Array.from({ length: n }, (_, k) => k);

describe('workflows', () => {
  it('chain(add(2, 2), add(4), add(8)) → 16, each step a task of its own fed the previous result', async () => {
    const wf = await tw.chain(tw.sig('add', 2, 2), tw.sig('add', 4), tw.sig('add', 8)).start();
    expect(wf.name).toBe('workflow');
    const seen = await watchAll(wf.id);
    const end = seen.at(-1)!;
    expect(TaskState[end.state]).toBe('SUCCESS');
    expect(resultOf(end)).toBe(16);
    // Gap-free, PENDING → STARTED → SUCCESS, with progress as the steps finish.
    expect(seen.map((t) => Number(t.version))).toEqual(range(seen.length).map((k) => k + 1));
    expect(TaskState[seen[0]!.state]).toBe('PENDING');
    expect(seen.some((t) => t.state === TaskState.STARTED)).toBe(true);
    expect(end.progress).toEqual({ done: 3, total: 3 });
    // Resumable: a watch from a version it saw gets the rest, from the log.
    const resumed: Task[] = [];
    for await (const t of tw.watch(wf.id, { afterVersion: 2n })) resumed.push(t);
    expect(resumed.map((t) => Number(t.version))).toEqual(seen.slice(2).map((t) => Number(t.version)));
    expect(resumed.map((t) => t.progress)).toEqual(seen.slice(2).map((t) => t.progress));

    const status = (await tw.rpc.getStatus({ id: wf.id })).task!;
    expect(status.children).toHaveLength(3);
    const steps = await Promise.all(status.children.map((id) => tw.status(id)));
    expect(steps.map((t) => t.parentId)).toEqual([wf.id, wf.id, wf.id]);
    expect(steps.map((t) => resultOf(t))).toEqual([4, 8, 16]);
    expect(steps.map((t) => argsOf(t))).toEqual([
      [2, 2],
      [4, 4],
      [8, 8],
    ]);
  });

  it('group(add(k, k) for k in 0..9) → [0, 2, …, 18], in order whatever the finishing order', async () => {
    const wf = await tw.group(...range(10).map((k) => tw.sig('add', k, k))).start();
    expect(await tw.wait(wf.id)).toEqual(range(10).map((k) => 2 * k));
  });

  it("a group's list follows the group's order, not the finishing order", async () => {
    // The first member waits out a countdown, so the second finishes first.
    const wf = await tw.group(tw.signature('add', { args: [1, 1], countdownMs: 1500 }), tw.sig('add', 2, 2)).start();
    for await (const t of tw.watch(wf.id, { afterVersion: 0n })) {
      if ((t.progress as { done?: number } | undefined)?.done !== 1) continue;
      const [first, second] = await Promise.all((await tw.rpc.getStatus({ id: wf.id })).task!.children.map((id) => tw.status(id)));
      expect([TaskState[first!.state], TaskState[second!.state]]).toEqual(['PENDING', 'SUCCESS']);
      break;
    }
    expect(await tw.wait(wf.id)).toEqual([2, 4]);
  });

  it("the workflow's record on its own queue, its tasks on theirs", async () => {
    const wf = await tw.chain(tw.sig('add', 1, 1), tw.sig('add', 2)).start({ queue: 'flows' });
    expect(wf.id.startsWith('flows/')).toBe(true);
    expect(wf.queue).toBe('flows');
    expect(await tw.wait(wf.id)).toBe(4);
    const kids = (await tw.rpc.getStatus({ id: wf.id })).task!.children;
    expect((await Promise.all(kids.map((id) => tw.status(id)))).map((t) => t.queue)).toEqual(['default', 'default']);
    expect((await tw.rpc.listTasks({ queue: 'flows' })).tasks.map((t) => t.id)).toEqual([wf.id]);
  });

  it('chord(group(add(k, k)…), tsum) → 90', async () => {
    const wf = await tw
      .chord(
        range(10).map((k) => tw.sig('add', k, k)),
        tw.sig('tsum'),
      )
      .start();
    expect(await tw.wait(wf.id)).toBe(90);
    const end = await tw.status(wf.id);
    expect(end.progress).toEqual({ done: 11, total: 11 });
  });

  it('a group inside a chain gets the previous result for each member and its list feeds the next step', async () => {
    // add(1, 1) = 2 → group(add(2, 10), add(2, 20)) = [12, 22] → tsum → 34
    const wf = await tw.chain(tw.sig('add', 1, 1), tw.group(tw.sig('add', 10), tw.sig('add', 20)), tw.sig('tsum')).start();
    expect(await tw.wait(wf.id)).toBe(34);
  });

  it('a chain inside a group, and a chord whose body is a chain', async () => {
    const inGroup = await tw.group(tw.chain(tw.sig('add', 1, 2), tw.sig('add', 3)), tw.sig('add', 5, 5)).start();
    expect(await tw.wait(inGroup.id)).toEqual([6, 10]);

    // [0, 2, 4] → tsum = 6 → add(6, 100) = 106
    const body = await tw
      .chord(
        range(3).map((k) => tw.sig('add', k, k)),
        tw.chain(tw.sig('tsum'), tw.sig('add', 100)),
      )
      .start();
    expect(await tw.wait(body.id)).toBe(106);
  });

  it('an immutable step (.si()) does not receive the previous result', async () => {
    const wf = await tw.chain(tw.sig('add', 2, 2), tw.sig('add', 1, 1).si(), tw.sig('add', 10)).start();
    expect(await tw.wait(wf.id)).toBe(12);
  });

  it('lists the workflow with its tasks on its queue, and a step keeps its own queue and options', async () => {
    const wf = await tw.chain(tw.sig('add', 1, 1), tw.signature('add', { args: [3], maxAttempts: 5 })).start();
    expect(await tw.wait(wf.id)).toBe(5);
    const listed = (await tw.rpc.listTasks({ name: 'workflow' })).tasks.map((t) => t.id);
    expect(listed).toContain(wf.id);
    const children = (await tw.rpc.getStatus({ id: wf.id })).task!.children;
    expect((await tw.status(children[1]!)).maxAttempts).toBe(5);
  });
});
