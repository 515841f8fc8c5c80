import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resultOf, TaskState, type Task } from '../src/client/index.js';
import { startStack, type Stack } from './helpers/stack.js';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.stop();
});

async function collect(id: string): Promise<Task[]> {
  const seen: Task[] = [];
  for await (const t of stack.client.watch(id)) seen.push(t);
  return seen;
}

describe('start and watch', () => {
  it('runs hello through PENDING → STARTED → SUCCESS', async () => {
    const task = await stack.client.start('hello', { args: ['Lucy'] });
    expect(task.state).toBe(TaskState.PENDING);
    const seen = await collect(task.id);
    expect(seen.at(-1)?.state).toBe(TaskState.SUCCESS);
    expect(resultOf(seen.at(-1)!)).toBe('Hello Lucy!');
  });
});
