/**
 * The tasks the benchmarks run (TASKWIRE_TASKS=bench/tasks.ts): `noop` does nothing and
 * returns null, so a figure measures the queue, not the work; `noopInline` is the same
 * defined with `inline: true`, run on the worker's main thread.
 */
import { createRegistry, defineTask } from '../src/tasks/define.js';

export const noop = defineTask('noop', { maxAttempts: 1 }, () => null);

export const noopInline = defineTask('noopInline', { maxAttempts: 1, inline: true }, () => null);

export default createRegistry(noop, noopInline);
