/**
 * The worker's handler threads (src/worker/threads.ts) with real worker_threads: several
 * tasks may wait on one thread, yet a forced kill stops exactly one task — the tasks queued
 * behind it run elsewhere, a task killed before it started never runs, and slow tasks get
 * a thread each.
 */
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../src/log.js';
import type { Outcome } from '../src/worker/handlerThread.js';
import { HandlerThreads, type Run } from '../src/worker/threads.js';

const TASKS = fileURLToPath(new URL('./fixtures/threadTasks.ts', import.meta.url));
const log = createLogger('test', { level: 'silent', format: 'json' });

let threads: HandlerThreads | undefined;
afterEach(async () => {
  await threads?.close();
  threads = undefined;
});

async function start(max: number): Promise<HandlerThreads> {
  threads = await HandlerThreads.start(TASKS, { max, min: 1, spawnAfterMs: 5, idleMs: 30_000 }, log);
  return threads;
}

interface Submitted {
  run: Run;
  /** Resolves when the handler reported from inside (it is running). */
  started: Promise<void>;
  ran: () => boolean;
}

let next = 0;
function submit(pool: HandlerThreads, name: 'quick' | 'block' | 'wait', args: unknown[] = []): Submitted {
  let ran = false;
  let onStart!: () => void;
  const started = new Promise<void>((r) => (onStart = r));
  const id = `t${next++}`;
  const run = pool.submit({ id, name, args: JSON.stringify(args), kwargs: '{}', attempt: 1 }, () => {
    ran = true;
    onStart();
  });
  return { run, started, ran: () => ran };
}

const returned = (value: string): Outcome => ({ kind: 'returned', result: JSON.stringify(value) });

describe('handler threads', () => {
  it('kills a busy task alone: the tasks queued behind it on its thread run elsewhere, once each', async () => {
    const pool = await start(1);
    const blocker = submit(pool, 'block', [30]);
    const behind = ['a', 'b', 'c', 'd'].map((v) => submit(pool, 'quick', [v]));
    await blocker.started;
    blocker.run.kill('terminate');
    expect(await blocker.run.outcome).toEqual({ kind: 'killed', why: 'terminate' });
    for (const [i, t] of behind.entries()) expect(await t.run.outcome).toEqual(returned(['a', 'b', 'c', 'd'][i]!));
    // The killed thread was replaced: the pool still runs work.
    expect(await submit(pool, 'quick', ['e']).run.outcome).toEqual(returned('e'));
  });

  it('never runs a task killed while it waited behind another', async () => {
    const pool = await start(1);
    const blocker = submit(pool, 'block', [30]);
    const waiting = submit(pool, 'quick', ['never']);
    await blocker.started;
    waiting.run.kill('terminate');
    expect(await waiting.run.outcome).toEqual({ kind: 'killed', why: 'terminate' });
    blocker.run.kill('shutdown');
    expect(await blocker.run.outcome).toEqual({ kind: 'killed', why: 'shutdown' });
    expect(await submit(pool, 'quick', ['after']).run.outcome).toEqual(returned('after'));
    expect(waiting.ran()).toBe(false);
  });

  it('leaves a task that already finished as it ended when the kill comes late', async () => {
    const pool = await start(1);
    const done = submit(pool, 'quick', ['done']);
    expect(await done.run.outcome).toEqual(returned('done'));
    done.run.kill('terminate');
    expect(await submit(pool, 'quick', ['still']).run.outcome).toEqual(returned('still'));
  });

  it('kills only its target whatever the moment: queued, starting, running or finishing', async () => {
    const pool = await start(2);
    for (let round = 0; round < 3; round++) {
      const before = ['x', 'y'].map((v) => submit(pool, 'quick', [`${round}${v}`]));
      const target = submit(pool, 'block', [0.02]);
      const after = ['z', 'w'].map((v) => submit(pool, 'quick', [`${round}${v}`]));
      // Kill at a different point each round: at once, a few turns later, once it runs.
      if (round === 1) for (let i = 0; i < 5; i++) await Promise.resolve();
      if (round === 2) await target.started;
      target.run.kill('terminate');
      const outcome = await target.run.outcome;
      expect(['killed', 'returned']).toContain(outcome.kind);
      for (const t of [...before, ...after]) expect((await t.run.outcome).kind).toBe('returned');
    }
  });

  it('starts a task cancelled while it waited behind another with its signal aborted, on whichever thread it then runs', async () => {
    const pool = await start(2);
    const blocker = submit(pool, 'block', [30]);
    // Queued behind the busy loop on the one thread there is; cancelled there.
    const waiting = submit(pool, 'wait', [30]);
    waiting.run.abort('cancelled while queued');
    await blocker.started;
    // The pool moves it to a second thread once the busy loop has run too long: it must
    // start there already cancelled, not wait out its 30 s.
    expect(await waiting.run.outcome).toEqual(returned('aborted: cancelled while queued'));
    expect(pool.size).toBe(2);
    blocker.run.kill('terminate');
    expect(await blocker.run.outcome).toEqual({ kind: 'killed', why: 'terminate' });
  });

  it('gives slow tasks a thread each, up to the concurrency', async () => {
    const pool = await start(2);
    const slow = [1, 2].map(() => submit(pool, 'block', [30]));
    // Two busy loops can only both have started if they run on two threads.
    await Promise.all(slow.map((t) => t.started));
    expect(pool.size).toBe(2);
    for (const t of slow) t.run.kill('terminate');
    for (const t of slow) expect(await t.run.outcome).toEqual({ kind: 'killed', why: 'terminate' });
  });

  it('settles waiting and running tasks as killed (shutdown) when closed', async () => {
    const pool = await start(1);
    const blocker = submit(pool, 'block', [30]);
    const waiting = submit(pool, 'quick', ['late']);
    await blocker.started;
    await pool.close();
    expect(await blocker.run.outcome).toEqual({ kind: 'killed', why: 'shutdown' });
    expect(await waiting.run.outcome).toEqual({ kind: 'killed', why: 'shutdown' });
    expect(waiting.ran()).toBe(false);
  });
});
