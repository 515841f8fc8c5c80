/**
 * The tasks the benchmarks run (TASKWIRE_TASKS=bench/tasks.ts): `noop` does nothing and
 * returns null, so a figure measures the queue, not the work.
 */
import { createRegistry, defineTask } from '../src/tasks/define.js';

export const noop = defineTask('noop', { maxAttempts: 1 }, () => null);

export default createRegistry(noop);
