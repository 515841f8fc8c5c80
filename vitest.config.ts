import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/chaos/**'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // Each suite starts its own redis-server and taskwire processes, which mostly wait (on
    // leases, ticks, grace periods) rather than compute: three at a time fit 2 cores.
    maxWorkers: 3,
    minWorkers: 1,
    teardownTimeout: 10_000,
  },
});
