import { defineConfig } from 'vitest/config';

// `npm run test:chaos`: the chaos test alone (minutes, not part of `npm test`).
export default defineConfig({
  test: {
    include: ['test/chaos/**/*.test.ts'],
    testTimeout: 240_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 1,
    minWorkers: 1,
    teardownTimeout: 10_000,
  },
});
