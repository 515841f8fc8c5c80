/**
 * Workflows when things go wrong, over real gRPC and a real Redis: a failing step in each
 * position, a revoked step, a cancel of the workflow mid-chain and mid-chord, and a worker
 * SIGKILLed mid-workflow.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CancelOutcome, resultOf, TaskState, TERMINAL, type Task, type TaskwireClient } from '../src/client/index.js';
import { Follow, isState } from './helpers/follow.js';
import { startStack, type Stack } from './helpers/stack.js';

vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

let stack: Stack;
let tw: TaskwireClient;

beforeAll(async () => {
  stack = await startStack({ env: { TASKWIRE_LEASE: '2s' }, workerArgs: ['--concurrency', '4'] });
  tw = stack.client;
});
afterAll(async () => {
  await stack?.stop();
});

const final = async (id: string): Promise<Task> => {
  let last: Task | undefined;
  for await (const t of tw.watch(id)) last = t;
  return last!;
};
const children = async (id: string) => (await tw.rpc.getStatus({ id })).task!.children;

/** Watch the workflow until it has `n` tasks; their ids. */
async function untilChildren(id: string, n: number): Promise<string[]> {
  for await (const t of tw.watch(id, { afterVersion: 0n })) {
    const kids = await children(id);
    if (kids.length >= n) return kids;
    if (TERMINAL.has(t.state)) break;
  }
  throw new Error(`workflow ${id} ended with fewer than ${n} tasks`);
}

/** The workflow ended FAILURE with `type`, and its message names the failing task. */
async function expectFailed(wf: Task, type: string, message: string, tasks: number): Promise<{ end: Task; failed: Task }> {
  const end = await final(wf.id);
  expect(TaskState[end.state]).toBe('FAILURE');
  expect(end.error?.type).toBe(type);
  expect(end.error?.message).toContain(message);
  const kids = await children(wf.id);
  // Nothing after the failure was ever started.
  expect(kids).toHaveLength(tasks);
  const records = await Promise.all(kids.map((k) => tw.status(k)));
  const failed = records.find((t) => end.error!.message.includes(t.id));
  expect(failed, `the message names a task of the workflow: ${end.error?.message}`).toBeDefined();
  return { end, failed: failed! };
}

describe('a failing step fails the workflow, and nothing after it starts', () => {
  it('first step of a chain', async () => {
    const wf = await tw.chain(tw.sig('fail', 'first'), tw.sig('add', 1), tw.sig('add', 2)).start();
    const { failed } = await expectFailed(wf, 'Error', 'first', 1);
    expect(failed.name).toBe('fail');
  });

  it('middle step of a chain', async () => {
    const wf = await tw.chain(tw.sig('add', 1, 1), tw.sig('fail', 'middle').si(), tw.sig('add', 2)).start();
    await expectFailed(wf, 'Error', 'middle', 2);
  });

  it('last step of a chain, with its error type', async () => {
    const wf = await tw
      .chain(tw.sig('add', 1, 1), tw.sig('add', 2), tw.signature('fail', { args: ['last'], kwargs: { type: 'ValueError' } }).si())
      .start();
    await expectFailed(wf, 'ValueError', 'last', 3);
  });

  it('only after its retries', async () => {
    const retried = tw.signature('fail', { args: ['again'], maxAttempts: 2, retryOn: ['*'], initialBackoffMs: 10, maxBackoffMs: 10 });
    const wf = await tw.chain(retried, tw.sig('add', 1)).start();
    const { failed } = await expectFailed(wf, 'Error', 'again', 1);
    expect(failed.attempt).toBe(2);
  });

  it('a member of a group; a sibling still running finishes and changes nothing', async () => {
    const wf = await tw.group(tw.sig('sleep', 1), tw.sig('fail', 'member'), tw.sig('add', 2, 2)).start();
    const { end } = await expectFailed(wf, 'Error', 'member', 3);
    const sleeper = (await children(wf.id))[0]!;
    expect(TaskState[(await final(sleeper)).state]).toBe('SUCCESS');
    const after = await tw.status(wf.id);
    expect(after.version).toBe(end.version);
    expect(TaskState[after.state]).toBe('FAILURE');
  });

  it("a member of a chord's header: ChordError, the body never runs", async () => {
    const wf = await tw.chord([tw.sig('add', 1, 1), tw.sig('fail', 'header')], tw.sig('tsum')).start();
    const { end, failed } = await expectFailed(wf, 'ChordError', 'header', 2);
    expect(end.error?.message).toBe(`Dependency ${failed.id} raised Error: header`);
  });

  it("a chord's body", async () => {
    const wf = await tw.chord([tw.sig('add', 1, 1), tw.sig('add', 2, 2)], tw.sig('fail', 'body').si()).start();
    await expectFailed(wf, 'Error', 'body', 3);
  });

  it('a step revoked on its own', async () => {
    const wf = await tw.chain(tw.sig('sleep', 30), tw.sig('add', 1)).start();
    const [step] = await untilChildren(wf.id, 1);
    await new Follow(tw, step!).until(isState(TaskState.STARTED), 'the step started');
    await tw.cancel(step!, { terminate: true });
    await expectFailed(wf, 'TaskRevokedError', 'cancelled', 1);
  });
});

describe('cancel of a workflow', () => {
  it('mid-chain: REVOKED, the running step is terminated, the next never starts', async () => {
    const wf = await tw.chain(tw.sig('add', 1, 1), tw.sig('spin', 30).si(), tw.sig('add', 1)).start();
    const kids = await untilChildren(wf.id, 2);
    await new Follow(tw, kids[1]!).until(isState(TaskState.STARTED), 'the spin started');
    const res = await tw.cancel(wf.id, { terminate: true, reason: 'stop the flow' });
    expect(res.outcome).toBe(CancelOutcome.REVOKED);
    expect(TaskState[res.task!.state]).toBe('REVOKED');
    const end = await final(wf.id);
    expect(TaskState[end.state]).toBe('REVOKED');
    expect(end.error?.message).toBe('stop the flow');
    // The spin never looks at its signal: only terminate, passed down, ends it this soon.
    const spin = await final(kids[1]!);
    expect(TaskState[spin.state]).toBe('REVOKED');
    expect(spin.error?.message).toContain('terminated by force');
    expect(await children(wf.id)).toHaveLength(2);
    expect(TaskState[(await tw.status(wf.id)).state]).toBe('REVOKED');
  });

  it('mid-chord: every header member revoked, the body never starts', async () => {
    const wf = await tw
      .chord([tw.sig('sleep', 30), tw.sig('sleep', 30), tw.signature('sleep', { args: [30], countdownMs: 60_000 })], tw.sig('tsum'))
      .start();
    const kids = await untilChildren(wf.id, 3);
    await new Follow(tw, kids[0]!).until(isState(TaskState.STARTED), 'a header member started');
    await tw.cancel(wf.id);
    expect(TaskState[(await final(wf.id)).state]).toBe('REVOKED');
    const ends = await Promise.all(kids.map(final));
    // Running ones told to stop, the waiting one (its countdown) revoked before it ran.
    expect(ends.map((t) => TaskState[t.state])).toEqual(['REVOKED', 'REVOKED', 'REVOKED']);
    expect(ends[2]!.attempt).toBe(0);
    expect(await children(wf.id)).toHaveLength(3);
  });
});

describe('a worker SIGKILLed mid-workflow', () => {
  it('changes nothing visible: the step runs again elsewhere and the workflow completes', async () => {
    const queue = 'wf-crash';
    const names = ['wf-crash-a', 'wf-crash-b'];
    const procs = await Promise.all(names.map((name) => stack.startWorker({ env: { TASKWIRE_QUEUES: queue, TASKWIRE_WORKER_NAME: name } })));
    const on = (name: string, ...args: number[]) => tw.signature(name, { args, queue });
    const wf = await tw.chain(on('add', 1, 1), on('sleep', 2).si(), on('add', 2, 3).si(), on('add', 10)).start();
    const kids = await untilChildren(wf.id, 2);
    const running = await new Follow(tw, kids[1]!).until(isState(TaskState.STARTED), 'the sleep started');
    const victim = procs[names.indexOf(running.worker)];
    expect(victim, `the worker ${running.worker} is one of ours`).toBeDefined();
    expect(await victim!.kill()).toBe('SIGKILL');
    const end = await final(wf.id);
    expect(TaskState[end.state]).toBe('SUCCESS');
    expect(resultOf(end)).toBe(15);
    const sleep = await tw.status(kids[1]!);
    expect(sleep.attempt).toBe(2);
    // Each step was started exactly once.
    expect(await children(wf.id)).toHaveLength(4);
  });

  it('fails the workflow with WorkerLostError when the killed step had no attempt left', async () => {
    const queue = 'wf-lost';
    const names = ['wf-lost-a', 'wf-lost-b'];
    const procs = await Promise.all(names.map((name) => stack.startWorker({ env: { TASKWIRE_QUEUES: queue, TASKWIRE_WORKER_NAME: name } })));
    const once = tw.signature('sleep', { args: [30], queue, maxAttempts: 1 });
    const wf = await tw.chain(once, tw.signature('add', { args: [1], queue })).start();
    const [step] = await untilChildren(wf.id, 1);
    const running = await new Follow(tw, step!).until(isState(TaskState.STARTED), 'the step started');
    expect(await procs[names.indexOf(running.worker)]!.kill()).toBe('SIGKILL');
    await expectFailed(wf, 'WorkerLostError', 'was lost', 1);
  });
});
