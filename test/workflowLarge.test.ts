/**
 * A chord of ten thousand members completes: each member's finish costs the same whatever
 * the chord's size (a counter, no polling), and the body gets the ten thousand results, in
 * order, read in one go when the last member finishes.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { argsOf, TaskState, type TaskwireClient } from '../src/client/index.js';
import { startStack, type Stack } from './helpers/stack.js';

vi.setConfig({ testTimeout: 180_000, hookTimeout: 60_000 });

let stack: Stack;
let tw: TaskwireClient;

beforeAll(async () => {
  stack = await startStack({ workerArgs: ['--concurrency', '16'] });
  tw = stack.client;
});
afterAll(async () => {
  await stack?.stop();
});

describe('a chord of ten thousand members', () => {
  it('completes, its body summing the ten thousand results', async () => {
    const n = 10_000;
    const members = Array.from({ length: n }, (_, k) => tw.sig('add', k, k));
    const wf = await tw.chord(members, tw.sig('tsum')).start();
    expect(await tw.wait(wf.id)).toBe(n * (n - 1));
    const end = await tw.status(wf.id);
    expect(TaskState[end.state]).toBe('SUCCESS');
    expect(end.progress).toEqual({ done: n + 1, total: n + 1 });
    const children = (await tw.rpc.getStatus({ id: wf.id })).task!.children;
    expect(children).toHaveLength(n + 1);
    // The body got the list in the header's order.
    const body = await tw.status(children.at(-1)!);
    expect(body.name).toBe('tsum');
    expect(argsOf(body)[0]).toEqual(Array.from({ length: n }, (_, k) => 2 * k));
  });
});
