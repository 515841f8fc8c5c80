/**
 * The redlock guard around exclusive check-and-start, when it goes wrong: a lock whose
 * holder died blocks the key no longer than its TTL (and still admits one task, not two),
 * whether the holder is simulated in Redis or is a real API server killed with SIGKILL
 * while it held the lock; and the enqueue script's own re-check admits one task even when
 * the lock is taken away from its holders all the time.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorInfoSchema } from '../gen/google/rpc/error_details_pb.js';
import { CancelOutcome, Code, ConnectError, createTaskwireClient, type Task, type TaskwireClient } from '../src/client/index.js';
import { LOCK_TTL_MS } from '../src/store/exclusiveGuard.js';
import { keys } from '../src/store/keys.js';
import { redisClient } from './helpers/redis.js';
import { startStack, type Stack } from './helpers/stack.js';

// No worker reads this queue: tasks stay PENDING, so they hold their key until cancelled.
const QUEUE = 'nobody';

let stack: Stack;
let redis: Redis;
let two: TaskwireClient;

beforeAll(async () => {
  stack = await startStack({ workers: 0 });
  two = createTaskwireClient({ baseUrl: `http://127.0.0.1:${(await stack.startApi()).port}` });
  redis = redisClient(stack.redis.url);
});
afterAll(async () => {
  redis?.disconnect();
  await stack?.stop();
});

const startWith = (client: TaskwireClient, key: string) => client.start('hello', { queue: QUEUE, exclusiveKey: key });

interface Tracked {
  promise: Promise<PromiseSettledResult<Task>>;
  settled: boolean;
  outcome?: string;
}

function track(p: Promise<Task>): Tracked {
  const t: Tracked = { settled: false, promise: undefined as never };
  t.promise = p.then(
    (value) => {
      t.settled = true;
      t.outcome = `admitted ${value.id}`;
      return { status: 'fulfilled', value };
    },
    (reason: unknown) => {
      const e = ConnectError.from(reason);
      t.settled = true;
      t.outcome = `${Code[e.code]}: ${e.rawMessage}`;
      return { status: 'rejected', reason };
    },
  );
  return t;
}

/**
 * Wait until the dead holder's lock (value `dead`) is gone, failing if any Start settled
 * while it was still there: none may decide without the lock. `settled` is read before
 * each GET, so a Start that settled after the lock went away cannot be blamed wrongly.
 */
async function expectNoneSettleWhileHeld(lockKey: string, dead: string, starts: Tracked[]): Promise<void> {
  const deadline = Date.now() + LOCK_TTL_MS + 10_000;
  for (;;) {
    const settled = starts.filter((s) => s.settled).map((s) => s.outcome);
    const value = await redis.get(lockKey);
    if (value !== dead) return;
    expect(settled, 'Starts answered while a dead holder still had the lock').toEqual([]);
    if (Date.now() > deadline) throw new Error(`the lock ${lockKey} outlived its TTL`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Exactly one of `results` was admitted; the rest were refused naming it. */
function expectExactlyOneAdmitted(results: PromiseSettledResult<Task>[]): Task {
  const accepted = results.filter((r): r is PromiseFulfilledResult<Task> => r.status === 'fulfilled').map((r) => r.value);
  const errors = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => ConnectError.from(r.reason));
  expect(
    accepted.length,
    `admitted ${accepted.length}; refusals: ${[...new Set(errors.map((e) => `${Code[e.code]} ${e.rawMessage}`))].join(' | ')}`,
  ).toBe(1);
  const winner = accepted[0]!;
  for (const e of errors) {
    expect(`${Code[e.code]}: ${e.rawMessage}`).toMatch(/^AlreadyExists: .*already running/);
    expect(e.findDetails(ErrorInfoSchema)[0]?.metadata.running_task_id).toBe(winner.id);
  }
  return winner;
}

describe('the exclusive lock', () => {
  it('left behind by a dead holder blocks the key only until its TTL, and then admits one Start', async () => {
    const key = 'dead-holder';
    const lockKey = keys.exclusiveLock(QUEUE, key);
    const dead = randomUUID();
    // What a holder that died right after taking the lock leaves in Redis.
    expect(await redis.set(lockKey, dead, 'PX', LOCK_TTL_MS)).toBe('OK');
    const starts = Array.from({ length: 10 }, (_, i) => track(startWith(i % 2 ? two : stack.client, key)));
    await expectNoneSettleWhileHeld(lockKey, dead, starts);
    const winner = expectExactlyOneAdmitted(await Promise.all(starts.map((s) => s.promise)));
    expect(winner.exclusiveKey).toBe(key);
    await stack.client.cancel(winner.id);
  });

  it("ends a Start waiting for it with the caller's deadline, and writes nothing for that caller afterwards", async () => {
    const key = 'caller-gone';
    const lockKey = keys.exclusiveLock(QUEUE, key);
    expect(await redis.set(lockKey, randomUUID(), 'PX', 1500)).toBe('OK');
    const refused = await two.rpc.start({ name: 'hello', queue: QUEUE, exclusiveKey: key }, { timeoutMs: 300 }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(refused?.code, refused?.rawMessage).toBe(Code.DeadlineExceeded);
    while (await redis.exists(lockKey)) await new Promise((r) => setTimeout(r, 20));
    // A Start still waiting on the server would take the freed lock within one retry
    // (tens of ms) and create a task for the caller that is gone; a second's watch sees it.
    const watchUntil = Date.now() + 1000;
    while (Date.now() < watchUntil) {
      expect(await redis.get(keys.exclusive(QUEUE, key)), 'a task was created after its caller had gone').toBeNull();
      await new Promise((r) => setTimeout(r, 20));
    }
  });

  it('held by an API server killed with SIGKILL blocks the key only until its TTL', async () => {
    const key = 'killed-holder';
    const lockKey = keys.exclusiveLock(QUEUE, key);
    // A task holding the key, so that the doomed server's Starts are all refused and it
    // keeps taking and releasing the lock.
    const holder = await startWith(stack.client, key);

    const apiConnections = async () => ((await redis.client('LIST')) as string).split('\n').filter((l) => / name=taskwire:api /.test(l)).length;
    const live = await apiConnections(); // the connections of the API servers that stay
    let dead: string | undefined;
    for (let round = 0; round < 5 && !dead; round++) {
      const doomed = await stack.startApi();
      const client = createTaskwireClient({ baseUrl: `http://127.0.0.1:${doomed.port}` });
      let flooding = true;
      const flood = (async () => {
        while (flooding) await Promise.allSettled(Array.from({ length: 8 }, () => startWith(client, key)));
      })();
      // Freeze the server and look: with no other Start of this key anywhere, a lock in
      // Redis now is the frozen server's. Then kill it; otherwise let it go on and retry.
      for (let look = 0; look < 200; look++) {
        process.kill(doomed.pid, 'SIGSTOP');
        if (await redis.exists(lockKey)) break;
        process.kill(doomed.pid, 'SIGCONT');
        await new Promise((r) => setTimeout(r, 5));
      }
      flooding = false;
      await doomed.kill();
      await flood;
      // Once Redis has dropped the dead server's connections it has run every command the
      // server sent; a lock still there now has a holder that will never release it.
      const deadline = Date.now() + 10_000;
      while ((await apiConnections()) > live && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(await apiConnections()).toBe(live);
      dead = (await redis.get(lockKey)) ?? undefined;
    }
    expect(dead, 'never caught the server holding the lock when it was killed').toBeDefined();

    // Free the key itself (the holder task); only the dead server's lock is left.
    expect((await two.cancel(holder.id)).outcome).toBe(CancelOutcome.REVOKED);
    const starts = Array.from({ length: 10 }, (_, i) => track(startWith(i % 2 ? two : stack.client, key)));
    await expectNoneSettleWhileHeld(lockKey, dead!, starts);
    const winner = expectExactlyOneAdmitted(await Promise.all(starts.map((s) => s.promise)));
    expect(winner.id).not.toBe(holder.id);
    await stack.client.cancel(winner.id);
  });

  it('is not what keeps two tasks out: with the lock stolen from its holders all the time, one Start of 50 is admitted', async () => {
    const key = 'lock-stolen';
    const lockKey = keys.exclusiveLock(QUEUE, key);
    // Deleting the lock as soon as anyone takes it is a lock that expires mid-way, over
    // and over: holders overlap, and only the enqueue script's atomic re-check remains.
    const thief = redis.duplicate();
    let stealing = true;
    let stolen = 0;
    const steal = (async () => {
      while (stealing) stolen += await thief.del(lockKey);
    })();
    try {
      const results = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => startWith(i % 2 ? two : stack.client, key)));
      expectExactlyOneAdmitted(results);
    } finally {
      stealing = false;
      await steal;
      thief.disconnect();
    }
    expect(stolen, 'the lock was never taken away from a holder').toBeGreaterThan(0);
  });
});
