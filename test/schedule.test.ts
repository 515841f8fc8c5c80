/**
 * Time: countdown and not_before keep a task PENDING (in the scheduled set, not the stream)
 * until it is due; expires_at revokes a task no worker started in time, and it never runs;
 * a hard time limit stops a task by force (FAILURE TimeLimitExceeded) and the worker goes on.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { resultOf, TaskState, type Task } from '../src/client/index.js';
import { describe as show, Follow, isState, oneToN, versions } from './helpers/follow.js';
import { startStack, type Stack } from './helpers/stack.js';

// Generous bounds for a loaded machine (each test waits on events, never on a clock).
vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

let stack: Stack;
beforeAll(async () => {
  // One worker for the default queue; the tests that need their own start one.
  stack = await startStack({ workers: 1, env: { TASKWIRE_LEASE: '2s' }, workerArgs: ['-c', '2'] });
});
afterAll(async () => {
  await stack?.stop();
});

const ms = (ts: { seconds: bigint; nanos: number } | undefined) => Number(ts!.seconds) * 1000 + Math.floor(ts!.nanos / 1e6);
const history = (t: Task) => new Follow(stack.client, t.id).end();

describe('countdown and not_before', () => {
  async function expectWaitedUntilDue(task: Task): Promise<void> {
    expect(task.state).toBe(TaskState.PENDING);
    expect(task.notBefore).toBeDefined();
    const status = await stack.client.status(task.id);
    expect(status.state).toBe(TaskState.PENDING);
    expect(ms(status.notBefore)).toBe(ms(task.notBefore));
    const seen = await history(task);
    // Nothing happened between PENDING and the start: it waited as PENDING.
    expect(seen.map(show)).toEqual(['v1 PENDING#0', expect.stringMatching(/^v2 STARTED#1@/), expect.stringMatching(/^v3 SUCCESS#1@/)]);
    expect(ms(seen[1]!.startedAt)).toBeGreaterThanOrEqual(ms(task.notBefore));
    expect(resultOf(seen[2]!)).toBe('Hello Lucy!');
  }

  it('a countdown keeps the task PENDING with not_before set until it is due, then it runs', async () => {
    await expectWaitedUntilDue(await stack.client.start('hello', { args: ['Lucy'], countdownMs: 1500 }));
  });

  it('not_before does the same at a given time', async () => {
    await expectWaitedUntilDue(await stack.client.start('hello', { args: ['Lucy'], notBefore: new Date(Date.now() + 1500) }));
  });

  it('a countdown of zero runs the task at once, without not_before', async () => {
    const task = await stack.client.start('hello', { args: ['Lucy'], countdownMs: 0 });
    expect(task.notBefore).toBeUndefined();
    expect((await history(task)).at(-1)!.state).toBe(TaskState.SUCCESS);
  });
});

describe('expires_at', () => {
  it('revokes a task no worker started before it expired, as Expired, and it never runs', async () => {
    const queue = 'sched-expire';
    // The queue's only worker has one slot, busy for a while, and fetches nothing meanwhile.
    const worker = await stack.startWorker({ args: ['-c', '1'], env: { TASKWIRE_QUEUES: queue } });
    try {
      const busy = await stack.client.start('sleep', { args: [2], queue });
      const busyFollow = new Follow(stack.client, busy.id);
      await busyFollow.until(isState(TaskState.STARTED), 'the busy task started');
      const expiresAt = new Date(Date.now() + 300);
      const task = await stack.client.start('hello', { queue, expiresAt });
      expect(ms(task.expiresAt)).toBe(expiresAt.getTime());

      const seen = await history(task);
      expect(seen.map(show)).toEqual(['v1 PENDING#0', 'v2 REVOKED#0']);
      const end = seen.at(-1)!;
      expect(end.error?.type).toBe('Expired');
      expect(end.startedAt).toBeUndefined();
      expect(end.result).toBeUndefined();
      expect(ms(end.finishedAt)).toBeGreaterThan(expiresAt.getTime());
      // The worker went on with its work.
      expect((await busyFollow.end()).at(-1)!.state).toBe(TaskState.SUCCESS);
      const next = await history(await stack.client.start('hello', { queue }));
      expect(next.at(-1)!.state).toBe(TaskState.SUCCESS);
    } finally {
      await worker.stop();
    }
  });

  it('revokes a retried task whose next attempt comes after it expired', async () => {
    const task = await stack.client.start('fail', {
      kwargs: { message: 'boom' },
      maxAttempts: 3,
      retryOn: ['*'],
      // The default first backoff is at least 500ms.
      expiresAt: new Date(Date.now() + 400),
    });
    const seen = await history(task);
    expect(seen.map((t) => TaskState[t.state])).toEqual(['PENDING', 'STARTED', 'RETRY', 'REVOKED']);
    expect(seen.at(-1)!.error?.type).toBe('Expired');
    expect(seen.at(-1)!.attempt).toBe(1);
  });

  it('refuses an expiry in the past or before the countdown ends', async () => {
    await expect(stack.client.start('hello', { expiresAt: new Date(Date.now() - 1000) })).rejects.toThrow(/expires_at/);
    await expect(stack.client.start('hello', { countdownMs: 5000, expiresAt: new Date(Date.now() + 1000) })).rejects.toThrow(/expires_at/);
  });
});

describe('time_limit', () => {
  it('stops a task that runs past it by force, FAILURE TimeLimitExceeded, and the worker keeps working', async () => {
    const queue = 'sched-limit';
    const worker = await stack.startWorker({ args: ['-c', '1'], env: { TASKWIRE_QUEUES: queue } });
    try {
      // `spin` never looks at its signal: only killing its thread stops it.
      const task = await stack.client.start('spin', { args: [30], queue, timeLimitMs: 1000, maxAttempts: 3, retryOn: ['*'] });
      const seen = await history(task);
      expect(versions(seen)).toEqual(oneToN(3));
      const end = seen.at(-1)!;
      expect(end.state).toBe(TaskState.FAILURE);
      expect(end.attempt).toBe(1); // never retried
      expect(end.error?.type).toBe('TimeLimitExceeded');
      expect(end.error?.message).toContain('1s');
      // Its slot was replaced: the single-slot worker runs the next task.
      const after = await history(await stack.client.start('hello', { args: ['again'], queue }));
      expect(after.at(-1)!.state).toBe(TaskState.SUCCESS);
      expect(after.at(-1)!.worker).toBe(end.worker);
    } finally {
      await worker.stop();
    }
  });
});
