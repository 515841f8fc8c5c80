/**
 * A SIGTERM is obeyed even while Redis is gone: the graceful shutdown gets its grace period
 * plus a bound for its writes, then the process stops by force and exits non-zero, saying why,
 * instead of waiting for a Redis that may never return.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startTaskwire, type TaskwireProcess } from './helpers/processes.js';
import { startRedis } from './helpers/redis.js';

const started: TaskwireProcess[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((p) => p.kill()));
});

describe('SIGTERM while Redis is gone', () => {
  it.each(['serve', 'worker', 'dev'])('ends %s', async (command) => {
    const redis = await startRedis();
    const p = await startTaskwire(command, { redisUrl: redis.url, env: { TASKWIRE_SHUTDOWN_GRACE: '1s' } });
    started.push(p);
    await redis.stop();
    // Far past the bound: a process still running then is killed, and the test fails.
    const code = await p.stop(60_000);
    expect(code, p.output().slice(-2000)).not.toBe('SIGKILL');
  });
});
