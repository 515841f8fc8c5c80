/**
 * StartWorkflow refuses a bad tree before anything reaches Redis, with INVALID_ARGUMENT
 * naming the path to the bad node; and the workflow's own keys (idempotency, exclusive)
 * apply to it as a whole.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code, ConnectError, TaskState, type TaskwireClient } from '../src/client/index.js';
import type { StepInit } from '../src/client/workflow.js';
import { redisClient } from './helpers/redis.js';
import { keys } from '../src/store/keys.js';
import { startStack, type Stack } from './helpers/stack.js';

let stack: Stack;
let tw: TaskwireClient;
let redis: Redis;

beforeAll(async () => {
  stack = await startStack();
  tw = stack.client;
  redis = redisClient(stack.redis.url);
});
afterAll(async () => {
  redis?.disconnect();
  await stack?.stop();
});

const task = (name: string, args: number[] = []): StepInit => tw.signature(name, { args }).toStep();
const chainOf = (...steps: StepInit[]): StepInit => ({ kind: { case: 'chain', value: { steps } } });
const groupOf = (...steps: StepInit[]): StepInit => ({ kind: { case: 'group', value: { steps } } });

/** Every key but the API servers' health probe, which they write on their own clock. */
const userKeys = async () => (await redis.keys('*')).filter((k) => k !== keys.health()).sort();

/** The StartWorkflow of `root` is refused INVALID_ARGUMENT with a message starting `path:`; no key is written. */
async function refused(root: StepInit | undefined, path: string, extra: { queue?: string } = {}): Promise<string> {
  const before = await userKeys();
  const err = await tw.rpc.startWorkflow({ root, ...extra }).then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  expect(err, 'the call succeeded').toBeDefined();
  expect(Code[err!.code]).toBe('InvalidArgument');
  expect(err!.rawMessage.startsWith(`${path}:`), err!.rawMessage).toBe(true);
  expect(await userKeys()).toEqual(before);
  return err!.rawMessage;
}

describe('StartWorkflow refuses a bad tree, naming the bad node', () => {
  it('an unknown task name anywhere', async () => {
    const msg = await refused(chainOf(task('add', [1, 1]), task('nope')), 'root.chain.steps[1].task.name');
    expect(msg).toContain('no task is registered as "nope"');
    await refused(groupOf(task('add', [1, 1]), chainOf(task('add', [1, 1]), task('nope'))), 'root.group.steps[1].chain.steps[1].task.name');
  });

  it('an empty chain or group, a chord without header or body, a step of no kind, no root', async () => {
    await refused(groupOf(), 'root.group.steps');
    await refused(chainOf(task('add', [1, 1]), chainOf()), 'root.chain.steps[1].chain.steps');
    await refused({ kind: { case: 'chord', value: { header: { steps: [task('add', [1, 1])] } } } }, 'root.chord.body');
    await refused({ kind: { case: 'chord', value: { body: task('tsum') } } }, 'root.chord.header.steps');
    await refused(chainOf(task('add', [1, 1]), {}), 'root.chain.steps[1]');
    await refused(undefined, 'root');
  });

  it("a signature's own bad option, or a key only the workflow takes", async () => {
    const late = tw.signature('add', { args: [1, 1], timeLimitMs: -5 }).toStep();
    await refused(chainOf(task('add', [1, 1]), late), 'root.chain.steps[1].task.time_limit');
    const keyed = tw.rpc.startWorkflow({ root: { kind: { case: 'task', value: { name: 'add', exclusiveKey: 'k' } } } });
    await expect(keyed).rejects.toThrow(/root\.task\.exclusive_key: is not taken inside a workflow/);
    await refused(task('add', [1, 1]), 'queue', { queue: 'no spaces' });
  });

  it('nesting deeper than the limit', async () => {
    let root = task('add', [1, 1]);
    for (let d = 0; d < 40; d++) root = chainOf(root);
    const msg = await refused(root, `root${'.chain.steps[0]'.repeat(32)}`);
    expect(msg).toMatch(/nested too deep/);
  });

  it('more tasks than the limit', async () => {
    const add = task('add', [1, 1]);
    const msg = await refused(groupOf(...Array.from({ length: 20_001 }, () => add)), 'root.group.steps[20000]');
    expect(msg).toMatch(/20000 tasks at most/);
  });
});

describe("the workflow's own keys", () => {
  it('an idempotency key returns the first workflow', async () => {
    const flow = tw.chain(tw.sig('add', 1, 1), tw.sig('add', 1));
    const first = await flow.start({ idempotencyKey: 'wf-once' });
    const again = await flow.start({ idempotencyKey: 'wf-once' });
    expect(again.id).toBe(first.id);
    expect(await tw.wait(first.id)).toBe(3);
    expect((await tw.rpc.getStatus({ id: first.id })).task!.children).toHaveLength(2);
  });

  it('an exclusive key refuses a second workflow while the first runs, and frees itself when it ends', async () => {
    const flow = tw.chain(tw.sig('sleep', 1), tw.sig('add', 1, 1).si());
    const first = await flow.start({ exclusiveKey: 'wf-alone' });
    const err = await flow.start({ exclusiveKey: 'wf-alone' }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.AlreadyExists);
    expect(err?.rawMessage).toContain(first.id);
    // GetStatus by the key finds the workflow.
    expect((await tw.rpc.getStatus({ exclusiveKey: 'wf-alone' })).task!.id).toBe(first.id);
    expect(await tw.wait(first.id)).toBe(2);
    const second = await flow.start({ exclusiveKey: 'wf-alone' });
    expect(second.id).not.toBe(first.id);
    expect(TaskState[second.state]).not.toBe('FAILURE');
  });
});
