/**
 * Tasks defined with `inline: true` run on the worker's main thread, and behave as any other
 * task to their callers: result, progress, retries and a soft cancel reaching the handler's
 * signal. What differs is a forced stop: terminate or a hard time limit ends the task at
 * once and fires its signal, the handler's late result is discarded, and its slot stays
 * taken until the handler has returned.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { resultOf, TaskState, TERMINAL, type Task } from '../src/client/index.js';
import { keys } from '../src/store/keys.js';
import { describe as show, versions, oneToN } from './helpers/follow.js';
import { redisClient } from './helpers/redis.js';
import { startStack, type Stack } from './helpers/stack.js';

const TASKS = 'test/fixtures/inlineTasks.ts';

vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

let stack: Stack;
let redis: Redis;
beforeAll(async () => {
  // One slot: a task begins only once the slot is free.
  stack = await startStack({ workers: 1, env: { TASKWIRE_TASKS: TASKS }, workerArgs: ['-c', '1'] });
  redis = redisClient(stack.redis.url);
});
afterAll(async () => {
  redis?.disconnect();
  await stack?.stop();
});

/** Every record a watch from the first version sees, up to the terminal one. */
async function watchToEnd(id: string, onChange: (t: Task) => void | Promise<void> = () => {}): Promise<Task[]> {
  const seen: Task[] = [];
  for await (const t of stack.client.watch(id, { afterVersion: 0n })) {
    seen.push(t);
    await onChange(t);
    if (TERMINAL.has(t.state)) return seen;
  }
  throw new Error(`the watch of ${id} ended before a terminal state: ${seen.map(show).join(' → ')}`);
}

/** Waits until the Redis key holds a value (a handler wrote it); that value. */
async function written(key: string): Promise<string> {
  for (;;) {
    const v = await redis.get(key);
    if (v !== null) return v;
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('an inline task', () => {
  it('runs on the worker main thread and succeeds with its result, as a threaded task does on a handler thread', async () => {
    const inline = await stack.client.start('where', { args: ['in'] });
    const threaded = await stack.client.start('threaded', { args: ['off'] });
    const [a, b] = await Promise.all([watchToEnd(inline.id), watchToEnd(threaded.id)]);
    expect(a.map((t) => t.state)).toEqual([TaskState.PENDING, TaskState.STARTED, TaskState.SUCCESS]);
    expect(versions(a)).toEqual(oneToN(3));
    expect(resultOf(a.at(-1)!)).toEqual({ value: 'in', mainThread: true });
    expect(resultOf(b.at(-1)!)).toEqual({ value: 'off', mainThread: false });
  });

  it('reports progress, and a soft cancel reaches its signal: it ends REVOKED', async () => {
    const task = await stack.client.start('steps');
    const seen = await watchToEnd(task.id, async (t) => {
      if (t.progress?.step === 1) await stack.client.cancel(task.id);
    });
    expect(seen.some((t) => t.state === TaskState.STARTED && t.progress?.step === 1)).toBe(true);
    const end = seen.at(-1)!;
    expect(end.state).toBe(TaskState.REVOKED);
    expect(end.error?.type).toBe('TaskRevokedError');
  });

  it('is retried by its policy: RETRY with the error, then SUCCESS on the second attempt', async () => {
    const task = await stack.client.start('flaky');
    const seen = await watchToEnd(task.id);
    const retry = seen.find((t) => t.state === TaskState.RETRY);
    expect(retry?.error).toMatchObject({ type: 'Flaky', message: 'attempt 1 failed' });
    expect(seen.at(-1)!.state).toBe(TaskState.SUCCESS);
    expect(resultOf(seen.at(-1)!)).toEqual({ attempt: 2 });
  });

  it('ends REVOKED at once on terminate with its signal fired; its late result is discarded and the slot waits for the handler', async () => {
    const stuck = await stack.client.start('stubborn', { kwargs: { ms: 1500 } });
    const next = await stack.client.start('where', { args: ['after'] });
    const seen = await watchToEnd(stuck.id, async (t) => {
      if (t.state === TaskState.STARTED) await stack.client.cancel(stuck.id, { terminate: true, reason: 'stop now' });
    });
    expect(seen.at(-1)!.state).toBe(TaskState.REVOKED);
    expect(seen.at(-1)!.error?.message).toContain('stop now');
    expect(await written(`inline:aborted:${stuck.id}`)).toBe('the task was terminated');
    // The handler ran on to its end; the slot was not free before it did.
    const returnedAt = Number(await written(`inline:returned:${stuck.id}`));
    const after = await watchToEnd(next.id);
    expect(after.at(-1)!.state).toBe(TaskState.SUCCESS);
    const startedAt = Number(await redis.hget(keys.task('default', next.id), 'started'));
    expect(startedAt).toBeGreaterThanOrEqual(returnedAt);
    // What the handler returned after the task ended changed nothing.
    const record = await stack.client.status(stuck.id);
    expect(record.state).toBe(TaskState.REVOKED);
    expect(record.version).toBe(seen.at(-1)!.version);
  });

  it('fails with TimeLimitExceeded past its hard time limit, its signal fired', async () => {
    const task = await stack.client.start('stubborn', { kwargs: { ms: 1500 }, timeLimitMs: 200 });
    const end = (await watchToEnd(task.id)).at(-1)!;
    expect(end.state).toBe(TaskState.FAILURE);
    expect(end.error?.type).toBe('TimeLimitExceeded');
    expect(await written(`inline:aborted:${task.id}`)).toBe('the task ran past its hard time limit');
    await written(`inline:returned:${task.id}`);
  });
});
