/**
 * Retries: a failed attempt whose error type the policy lists runs again after an
 * exponential backoff with jitter, waiting in RETRY with the error and the time of the next
 * attempt; the final FAILURE keeps the last error. Errors not listed, and errors no retry
 * can mend (EncodeError), end the task at once.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { resultOf, TaskState, type Task } from '../src/client/index.js';
import type { TaskRecord } from '../src/store/record.js';
import { backoffMs, shouldRetry } from '../src/worker/retryPolicy.js';
import { describe as show, Follow, oneToN, versions } from './helpers/follow.js';
import { startStack, type Stack } from './helpers/stack.js';

const TASKS = 'test/fixtures/faultTasks.ts';

// Generous bounds for a loaded machine (each test waits on events, never on a clock).
vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ workers: 1, env: { TASKWIRE_TASKS: TASKS }, workerArgs: ['-c', '4'] });
});
afterAll(async () => {
  await stack?.stop();
});

interface Retry {
  maxAttempts: number;
  retryOn: string[];
  initialBackoffMs?: number;
}

/** Start with a retry policy given by the Start request (through the client's options). */
function start(name: string, kwargs: Record<string, string | number>, retry?: Retry): Promise<Task> {
  return stack.client.start(name, {
    kwargs,
    ...(retry && { ...retry, initialBackoffMs: retry.initialBackoffMs ?? 100, maxBackoffMs: 1000 }),
  });
}

const history = (t: Task) => new Follow(stack.client, t.id).end();
const ms = (ts: { seconds: bigint; nanos: number } | undefined) => Number(ts!.seconds) * 1000 + Math.floor(ts!.nanos / 1e6);

describe('a Start retry policy', () => {
  it('retries a listed error type with RETRY states carrying the error and the next attempt time; the final FAILURE keeps the last error', async () => {
    const task = await start('fail', { message: 'boom', type: 'Flaky' }, { maxAttempts: 3, retryOn: ['Flaky'] });
    expect(task.maxAttempts).toBe(3);
    const seen = await history(task);
    expect(seen.map(show)).toEqual([
      'v1 PENDING#0',
      expect.stringMatching(/^v2 STARTED#1@/),
      expect.stringMatching(/^v3 RETRY#1@/),
      expect.stringMatching(/^v4 STARTED#2@/),
      expect.stringMatching(/^v5 RETRY#2@/),
      expect.stringMatching(/^v6 STARTED#3@/),
      expect.stringMatching(/^v7 FAILURE#3@/),
    ]);
    for (const i of [2, 4]) {
      const retry = seen[i]!;
      expect(retry.error?.type).toBe('Flaky');
      expect(retry.error?.message).toBe('boom');
      expect(retry.nextAttemptAt).toBeDefined();
      expect(retry.finishedAt).toBeUndefined();
      // Due after the Start's initial backoff (100ms), doubled for the second: not the default 1s.
      expect(ms(retry.nextAttemptAt) - ms(retry.updatedAt)).toBeLessThanOrEqual(i === 2 ? 100 : 200);
      // The next attempt did not start before it was due.
      expect(ms(seen[i + 1]!.startedAt)).toBeGreaterThanOrEqual(ms(retry.nextAttemptAt));
      // A new attempt starts clean.
      expect(seen[i + 1]!.error).toBeUndefined();
    }
    const end = seen.at(-1)!;
    expect(end.error?.type).toBe('Flaky');
    expect(end.error?.message).toBe('boom');
    expect(end.error?.traceback).toContain('boom');
    expect(end.nextAttemptAt).toBeUndefined();
  });

  it('retries any error with retry_on ["*"]', async () => {
    const task = await start('fail', { message: 'any' }, { maxAttempts: 2, retryOn: ['*'] });
    const seen = await history(task);
    expect(seen.map((t) => TaskState[t.state])).toEqual(['PENDING', 'STARTED', 'RETRY', 'STARTED', 'FAILURE']);
    expect(seen.at(-1)!.error?.type).toBe('Error');
    expect(seen.at(-1)!.attempt).toBe(2);
  });

  it('does not retry an error type it does not list', async () => {
    const task = await start('fail', { message: 'fatal', type: 'Fatal' }, { maxAttempts: 3, retryOn: ['Flaky'] });
    const seen = await history(task);
    expect(seen.map(show)).toEqual(['v1 PENDING#0', expect.stringMatching(/^v2 STARTED#1@/), expect.stringMatching(/^v3 FAILURE#1@/)]);
    expect(seen.at(-1)!.error?.type).toBe('Fatal');
  });

  it('never retries an EncodeError, even with retry_on ["*"]', async () => {
    const task = await start('unserializable', {}, { maxAttempts: 3, retryOn: ['*'] });
    const seen = await history(task);
    expect(seen.map((t) => TaskState[t.state])).toEqual(['PENDING', 'STARTED', 'FAILURE']);
    expect(seen.at(-1)!.error?.type).toBe('EncodeError');
    expect(seen.at(-1)!.attempt).toBe(1);
  });
});

describe("a task's own retry policy", () => {
  it('is used when Start gives none: a flaky task succeeds on its third attempt', async () => {
    const task = await start('flaky', { succeedOn: 3 });
    expect(task.maxAttempts).toBe(3);
    const seen = await history(task);
    expect(versions(seen)).toEqual(oneToN(7));
    expect(seen.map((t) => TaskState[t.state])).toEqual(['PENDING', 'STARTED', 'RETRY', 'STARTED', 'RETRY', 'STARTED', 'SUCCESS']);
    expect(seen[2]!.error?.message).toBe('attempt 1 failed');
    expect(seen[4]!.error?.message).toBe('attempt 2 failed');
    const end = seen.at(-1)!;
    expect(resultOf(end)).toEqual({ attempt: 3 });
    expect(end.error).toBeUndefined();
  });

  it('keeps the last of different errors when the attempts run out', async () => {
    const seen = await history(await start('flaky', {}));
    const end = seen.at(-1)!;
    expect(TaskState[end.state]).toBe('FAILURE');
    expect(end.attempt).toBe(3);
    expect(end.error?.type).toBe('Flaky');
    expect(end.error?.message).toBe('attempt 3 failed');
  });

  it('is overridden by the Start policy', async () => {
    const seen = await history(await start('flaky', {}, { maxAttempts: 1, retryOn: ['Flaky'] }));
    expect(seen.map((t) => TaskState[t.state])).toEqual(['PENDING', 'STARTED', 'FAILURE']);
    expect(seen.at(-1)!.error?.message).toBe('attempt 1 failed');
  });
});

describe('the backoff', () => {
  const task = (attempt: number, o: Partial<TaskRecord> = {}): TaskRecord => ({
    id: 't',
    name: 'n',
    queue: 'q',
    state: 'STARTED',
    attempt,
    maxAttempts: 10,
    version: 2,
    createdAt: 0,
    updatedAt: 0,
    initialBackoffMs: 1000,
    maxBackoffMs: 10_000,
    ...o,
  });

  it('doubles each attempt up to the cap, with equal jitter (half fixed, half random)', () => {
    const low = (a: number) => backoffMs(task(a), () => 0);
    const high = (a: number) => backoffMs(task(a), () => 1);
    expect([1, 2, 3, 4, 5, 6].map(low)).toEqual([500, 1000, 2000, 4000, 5000, 5000]);
    expect([1, 2, 3, 4, 5, 6].map(high)).toEqual([1000, 2000, 4000, 8000, 10_000, 10_000]);
    expect(backoffMs(task(2), () => 0.5)).toBe(1500);
  });

  it('uses the defaults (1s initial, 5 min cap) when the task gives none', () => {
    const t = (a: number) => task(a, { initialBackoffMs: undefined, maxBackoffMs: undefined });
    expect(backoffMs(t(1), () => 1)).toBe(1000);
    expect(backoffMs(t(20), () => 1)).toBe(300_000);
  });

  it('retries a lost worker whatever retry_on says, and nothing once the attempts are spent', () => {
    expect(shouldRetry(task(1, { retryOn: [] }), 'WorkerLostError')).toBe(true);
    expect(shouldRetry(task(1, { retryOn: [] }), 'Error')).toBe(false);
    expect(shouldRetry(task(10, { retryOn: ['*'] }), 'Error')).toBe(false);
    for (const final of ['EncodeError', 'TimeLimitExceeded', 'TaskRevokedError']) {
      expect(shouldRetry(task(1, { retryOn: ['*'] }), final)).toBe(false);
    }
  });
});
