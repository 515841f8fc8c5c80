/**
 * The example tasks the README and the tests use.
 */
import { open } from 'node:fs/promises';
import { devNull } from 'node:os';
import type { JsonObject } from '../json.js';
import { sleep } from './abortable.js';
import { defineTask } from './define.js';

/** `hello("Lucy")` → "Hello Lucy!"; optional `seconds` to sleep first. */
export const hello = defineTask<[name?: string, seconds?: number], { name?: string; seconds?: number }, string>(
  'hello',
  async ({ args, kwargs, signal }) => {
    const name = args[0] ?? kwargs.name ?? 'Bob';
    const seconds = args[1] ?? kwargs.seconds ?? 0;
    if (seconds > 0) await sleep(seconds * 1000, signal);
    return `Hello ${name}!`;
  },
);

/** Sleeps `seconds`; stops early when cancelled. */
export const sleepTask = defineTask<[seconds?: number], { seconds?: number }, { slept: number }>('sleep', async ({ args, kwargs, signal }) => {
  const seconds = args[0] ?? kwargs.seconds ?? 1;
  await sleep(seconds * 1000, signal);
  return { slept: seconds };
});

/** Burns CPU for `seconds` and never looks at its signal: only terminate stops it. */
export const spin = defineTask<[seconds?: number], { seconds?: number }, { spun: number }>('spin', ({ args, kwargs }) => {
  const seconds = args[0] ?? kwargs.seconds ?? 1;
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    // busy: the point is to hold the CPU
  }
  return { spun: seconds };
});

/** Throws an error with the given `message` (and `type`, default "Error"). */
export const fail = defineTask<[message?: string], { message?: string; type?: string }, never>('fail', { maxAttempts: 1 }, ({ args, kwargs }) => {
  // A plain Error renamed, so the recorded type is `type` itself ("Error" by default), not
  // the name of a helper class.
  throw Object.assign(new Error(args[0] ?? kwargs.message ?? 'the task failed'), { name: kwargs.type ?? 'Error' });
});

/** Returns a file handle, which JSON cannot carry: ends in FAILURE with an EncodeError. */
export const unserializable = defineTask('unserializable', async () => {
  const handle = await open(devNull, 'w');
  setTimeout(() => void handle.close(), 1000).unref();
  return { file: handle } as unknown as JsonObject;
});

/** Reports `steps` progress updates (`interval` ms apart), then returns { steps }. */
export const progress = defineTask<[steps?: number], { steps?: number; interval?: number }, { steps: number }>(
  'progress',
  async ({ args, kwargs, progress: report, signal }) => {
    const steps = args[0] ?? kwargs.steps ?? 5;
    const interval = kwargs.interval ?? 100;
    for (let step = 1; step <= steps; step++) {
      await sleep(interval, signal);
      report({ step, of: steps });
    }
    return { steps };
  },
);

/** `add(x, y)` → x + y (Celery's canvas example: `chain(add(2, 2), add(4), add(8))` → 16). */
export const add = defineTask<[x: number, y: number], Record<string, never>, number>('add', ({ args: [x, y] }) => {
  if (typeof x !== 'number' || typeof y !== 'number') {
    throw Object.assign(new Error(`add takes two numbers, got ${JSON.stringify([x, y])}`), { name: 'TypeError' });
  }
  return x + y;
});

/** `tsum(list)` → the sum of a list of numbers (a chord's body: `chord(add(k, k)…, tsum)`). */
export const tsum = defineTask<[numbers: number[]], Record<string, never>, number>('tsum', ({ args: [numbers] }) => {
  if (!Array.isArray(numbers) || numbers.some((n) => typeof n !== 'number')) {
    throw Object.assign(new Error('tsum takes a list of numbers'), { name: 'TypeError' });
  }
  return numbers.reduce((sum, n) => sum + n, 0);
});
