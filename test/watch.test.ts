/**
 * The watch invariant under races: a watcher sees every version after the one it starts
 * from exactly once, in order, and the stream ends on the terminal state, whenever the
 * watch starts (before the task runs, while it runs, after it finished) and whatever
 * after_version it resumes from. Watches go through the raw RPC (no client-side resume), to
 * two API servers, while two workers run the tasks.
 */
import { timestampMs } from '@bufbuild/protobuf/wkt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTaskwireClient, TaskState, TERMINAL, type Task, type TaskwireClient } from '../src/client/index.js';
import { startStack, type Stack } from './helpers/stack.js';
import { seededRandom } from './helpers/random.js';

let stack: Stack;
let clients: TaskwireClient[];

beforeAll(async () => {
  // No worker yet: the race test starts them once its first watches are attached. Hundreds
  // of watches share each client's one HTTP/2 connection here.
  stack = await startStack({
    workers: 0,
    workerArgs: ['--concurrency', '3'],
    env: { TASKWIRE_MAX_WATCHERS_PER_CONNECTION: '2000' },
  });
  const second = await stack.startApi();
  clients = [stack.client, createTaskwireClient({ baseUrl: `http://127.0.0.1:${second.port}` })];
});
afterAll(async () => {
  await stack?.stop();
});

type Phase = 'before' | 'during' | 'after';

interface Watched {
  task: string;
  phase: Phase;
  afterVersion: bigint | undefined;
  records: Task[];
  heartbeats: number;
}

interface Watch {
  /** Resolves on the stream's first message (a record or a heartbeat): it is attached. */
  attached: Promise<void>;
  done: Promise<Watched>;
}

/** One raw WatchStatus stream, read to its end. */
function watchRaw(client: TaskwireClient, id: string, afterVersion?: bigint, phase: Phase = 'after'): Watch {
  const out: Watched = { task: id, phase, afterVersion, records: [], heartbeats: 0 };
  let attach!: () => void;
  const attached = new Promise<void>((r) => (attach = r));
  const done = (async () => {
    try {
      for await (const msg of client.rpc.watchStatus({ id, afterVersion })) {
        attach();
        if (msg.event.case === 'task') out.records.push(msg.event.value);
        else if (msg.event.case === 'heartbeat') out.heartbeats++;
      }
    } finally {
      attach();
    }
    return out;
  })();
  return { attached, done };
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The two workers, started once (by the race test when its first watches are attached). */
let workersStarted: Promise<unknown> | undefined;
const startWorkers = () => (workersStarted ??= Promise.all([stack.startWorker(), stack.startWorker()]));

describe('the watch invariant under races', () => {
  it('every watcher gets a gap-free, duplicate-free, ordered sequence ending in the terminal state', async () => {
    const seed = Number(process.env.WATCH_SEED ?? Date.now() % 1_000_000);
    const rand = seededRandom(seed);
    const pick = (n: number) => Math.floor(rand() * n);
    const TASKS = 60;

    // Quick hellos and progress tasks with several steps (a long STARTED with many
    // versions). Each task's final version is known from its kind (hello: 3; progress:
    // 3 + steps).
    type Plan = { name: string; args: (string | number)[]; kwargs: Record<string, number>; finalVersion: number };
    const plans: Plan[] = Array.from({ length: TASKS }, (): Plan => {
      if (rand() < 0.5) return { name: 'hello', args: ['W'], kwargs: { seconds: pick(3) * 0.05 }, finalVersion: 3 };
      const steps = 3 + pick(8);
      return { name: 'progress', args: [steps], kwargs: { interval: 30 + pick(100) }, finalVersion: 3 + steps };
    });
    const anyClient = () => clients[pick(2)]!;
    const resumeFrom = (plan: Plan) => BigInt(pick(plan.finalVersion));

    // Before: every task is queued while no worker runs, and watched (plain, and resumed
    // from a random version, possibly one not reached yet) until each watch is attached.
    const tasks = await Promise.all(plans.map((plan) => anyClient().start(plan.name, { args: plan.args, kwargs: plan.kwargs })));
    const before = tasks.flatMap((t, i) => [
      watchRaw(anyClient(), t.id, undefined, 'before'),
      watchRaw(anyClient(), t.id, resumeFrom(plans[i]!), 'before'),
    ]);
    await Promise.all(before.map((w) => w.attached));

    // During: the workers start, and more watches start at random moments while the queue
    // drains; after: each task is watched again once its first watch has ended.
    const workers = startWorkers();
    const during = tasks.flatMap((t, i) => [
      delay(pick(3000)).then(() => watchRaw(anyClient(), t.id, undefined, 'during').done),
      delay(pick(3000)).then(() => watchRaw(anyClient(), t.id, resumeFrom(plans[i]!), 'during').done),
    ]);
    const after = tasks.map(async (t, i) => {
      await before[2 * i]!.done;
      return Promise.all([watchRaw(anyClient(), t.id, undefined).done, watchRaw(anyClient(), t.id, resumeFrom(plans[i]!)).done]);
    });
    await workers;
    const all = [...(await Promise.all(before.map((w) => w.done))), ...(await Promise.all(during)), ...(await Promise.all(after)).flat()];
    expect(all).toHaveLength(TASKS * 6);

    // The truth: each task's final record, and what every watcher saw at each version.
    const finals = new Map<string, Task>();
    await Promise.all(tasks.map(async (t) => finals.set(t.id, await stack.client.status(t.id))));
    const byVersion = new Map<string, string>();

    const problems: string[] = [];
    for (const w of all) {
      const final = finals.get(w.task)!;
      const versions = w.records.map((r) => Number(r.version));
      const label = `task ${w.task} (${w.phase}) after_version=${w.afterVersion ?? '-'} saw [${versions.join(',')}]`;
      if (versions.length === 0) {
        problems.push(`${label}: nothing`);
        continue;
      }
      const first = w.afterVersion === undefined ? versions[0]! : Number(w.afterVersion) + 1;
      const expected = Array.from({ length: Number(final.version) - first + 1 }, (_, i) => first + i);
      if (versions.join(',') !== expected.join(',')) problems.push(`${label}: expected [${expected.join(',')}]`);
      const last = w.records.at(-1)!;
      if (!TERMINAL.has(last.state) || last.state !== final.state) problems.push(`${label}: ended ${TaskState[last.state]}`);
      for (const r of w.records) {
        if (r.id !== w.task || r.name === '' || !r.args) problems.push(`${label}: incomplete record v${r.version}`);
        // Every watcher agrees on what each version was.
        const key = `${r.id}@${r.version}`;
        const seen = JSON.stringify([r.state, r.progress ?? null, r.attempt, r.worker, timestampMs(r.updatedAt!)]);
        const earlier = byVersion.get(key);
        if (earlier === undefined) byVersion.set(key, seen);
        else if (earlier !== seen) problems.push(`${label}: v${r.version} was ${seen} here and ${earlier} elsewhere`);
      }
    }
    expect(problems, `seed ${seed} (WATCH_SEED=${seed} replays the plan)`).toEqual([]);

    // Each task ran once, as planned: its final version is the planned one.
    plans.forEach((plan, i) => {
      const final = finals.get(tasks[i]!.id)!;
      expect([final.state, Number(final.version)]).toEqual([TaskState.SUCCESS, plan.finalVersion]);
    });
    // The phases were what they say: plain watches started before the run began PENDING at
    // version 1, and those started after it began with the final record.
    const firstOf = (phase: Phase) => all.filter((w) => w.phase === phase && w.afterVersion === undefined).map((w) => w.records[0]!);
    expect(firstOf('before').every((r) => r.state === TaskState.PENDING && r.version === 1n)).toBe(true);
    expect(firstOf('after').every((r) => TERMINAL.has(r.state))).toBe(true);
  });

  it('a watch of a finished task gets the final record and ends', async () => {
    await startWorkers();
    const task = await stack.client.start('hello', { args: ['Done'] });
    await stack.client.wait(task.id);
    const w = await watchRaw(stack.client, task.id).done;
    expect(w.records.map((r) => [Number(r.version), r.state])).toEqual([[3, TaskState.SUCCESS]]);
    // Resumed from an earlier version: the rest of the history, then the end.
    const resumed = await watchRaw(clients[1]!, task.id, 1n).done;
    expect(resumed.records.map((r) => [Number(r.version), r.state])).toEqual([
      [2, TaskState.STARTED],
      [3, TaskState.SUCCESS],
    ]);
    // Resumed from the final version: nothing more will come, and the stream ends.
    const atEnd = await watchRaw(stack.client, task.id, 3n).done;
    expect(atEnd.records).toEqual([]);
  });

  it('a quiet stream carries heartbeat messages', async () => {
    // TASKWIRE_WATCH_HEARTBEAT is 1s in the stack helper; this task sleeps for a minute.
    await startWorkers();
    const task = await stack.client.start('sleep', { args: [60] });
    const records: Task[] = [];
    let heartbeats = 0;
    let heartbeatTime = 0;
    let cancelled = false;
    for await (const msg of stack.client.rpc.watchStatus({ id: task.id })) {
      if (msg.event.case === 'task') records.push(msg.event.value);
      if (msg.event.case === 'heartbeat') {
        heartbeats++;
        heartbeatTime = timestampMs(msg.event.value.time!);
        // A heartbeat came while nothing changed: the test has seen what it came for.
        if (!cancelled) {
          cancelled = true;
          await stack.client.cancel(task.id);
        }
      }
    }
    expect(heartbeats).toBeGreaterThanOrEqual(1);
    expect(heartbeatTime).toBeGreaterThan(timestampMs(task.createdAt!));
    // Heartbeats are not records: the record sequence is still whole and ends the stream.
    const versions = records.map((r) => Number(r.version));
    expect(versions).toEqual(versions.map((_, i) => versions[0]! + i));
    expect(records.at(-1)!.state).toBe(TaskState.REVOKED);
  });
});
