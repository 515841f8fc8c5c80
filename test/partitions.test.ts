/**
 * Partitioned queues (TASKWIRE_QUEUE_PARTITIONS): a queue's tasks spread over N partitions,
 * each with its own hash tag `{queue#k}` (so its own Cluster slot), on a standalone Redis.
 * Ids name their partition and resolve with no lookup; idempotency and exclusive keys hold
 * because a key always maps to one partition; the latest-task shortcuts, ListTasks and
 * WatchEvents cover every partition; workers read all partitions and lose nothing when one
 * is killed mid-run.
 */
import calculateSlot from 'cluster-key-slot';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CancelOutcome, Code, ConnectError, resultOf, TaskState, TaskwireClient, type Task } from '../src/client/index.js';
import { ConfigError, loadConfig } from '../src/config.js';
import { idTime, queueOf } from '../src/ids.js';
import { createRegistry, defineQueue } from '../src/tasks/define.js';
import { keys } from '../src/store/keys.js';
import { Follow, isState } from './helpers/follow.js';
import { runsAtLeast } from './helpers/periodic.js';
import { runTaskwire, type TaskwireProcess } from './helpers/processes.js';
import { redisClient } from './helpers/redis.js';
import { startStack, type Stack } from './helpers/stack.js';

vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

const PARTITIONS = 'hot=4,default=3,listed=4,crash=3,watched=3,cancelled=3';
const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}';

let stack: Stack;
let tw: TaskwireClient;

beforeAll(async () => {
  stack = await startStack({
    workers: 0,
    env: { TASKWIRE_QUEUE_PARTITIONS: PARTITIONS, TASKWIRE_LEASE: '2s', TASKWIRE_QUEUES: 'hot,default,watched,plain' },
  });
  // Two workers on the partitioned queues and on one that is not.
  stack.workers.push(...(await Promise.all([stack.startWorker(), stack.startWorker()])));
  tw = stack.client;
});
afterAll(async () => {
  await stack?.stop();
});

/** The partition index an id names (`hot#2/…` → 2). */
const partitionOf = (id: string) => Number(/#(\d+)\//.exec(id)?.[1]);

async function startMany(queue: string, n: number, name = 'hello', args: unknown[] = ['P', 0]): Promise<Task[]> {
  const { results } = await tw.rpc.startMany({
    requests: Array.from({ length: n }, () => TaskwireClient.startRequest(name, { queue, args: args as never })),
  });
  return results.map((r) => {
    if (r.outcome.case !== 'task') throw new Error(`a start was refused: ${JSON.stringify(r.outcome.value)}`);
    return r.outcome.value;
  });
}

async function refusal(p: Promise<unknown>): Promise<ConnectError> {
  return p.then(
    () => {
      throw new Error('expected the call to be refused');
    },
    (err: unknown) => ConnectError.from(err),
  );
}

/** Every change of a task to its end; the last one. */
async function watchToEnd(id: string): Promise<Task> {
  let last: Task | undefined;
  for await (const t of tw.watch(id)) last = t;
  return last!;
}

/** Wait until the clock is past the millisecond `id` was made in, so a later id is newer. */
async function pastMillisecondOf(id: string): Promise<void> {
  while (Date.now() <= idTime(id)) await new Promise((r) => setImmediate(r));
}

describe('a partitioned queue', () => {
  it('spreads its tasks over every partition, each its own hash tag and slot, and runs every one', async () => {
    const tasks = await startMany('hot', 40);
    for (const t of tasks) {
      expect(t.id).toMatch(new RegExp(`^hot#[0-3]/${UUID}$`));
      expect(t.queue, 'the record names the queue, not the partition').toBe('hot');
    }
    expect(new Set(tasks.map((t) => partitionOf(t.id)))).toEqual(new Set([0, 1, 2, 3]));

    // In Redis: each record under its partition's hash tag, none under the queue's own.
    const redis = redisClient(stack.redis.url);
    try {
      for (const t of tasks) {
        expect(await redis.exists(`taskwire:{hot#${partitionOf(t.id)}}:t:${t.id}`), t.id).toBe(1);
      }
      expect(await redis.keys('taskwire:{hot}:*')).toEqual([]);
    } finally {
      redis.disconnect();
    }
    const slots = new Set([0, 1, 2, 3].map((k) => calculateSlot(keys.stream(`hot#${k}`))));
    expect(slots.size, 'the partitions live in different Cluster slots').toBe(4);

    const results = await Promise.all(tasks.map((t) => tw.wait(t.id)));
    expect(results).toEqual(tasks.map(() => 'Hello P!'));
    for (const t of tasks) {
      const done = await tw.status(t.id);
      expect(done.state).toBe(TaskState.SUCCESS);
      expect(done.queue).toBe('hot');
    }
  });

  it('keeps ids of a queue that is not partitioned as they were', async () => {
    const [t] = await startMany('plain', 1);
    expect(t!.id).toMatch(new RegExp(`^plain/${UUID}$`));
    expect(await tw.wait(t!.id)).toBe('Hello P!');
  });

  it('partitions the default queue too: `default#k/<uuid>`', async () => {
    const t = await tw.start('hello', { args: ['D', 0] });
    expect(t.id).toMatch(new RegExp(`^default#[0-2]/${UUID}$`));
    expect(t.queue).toBe('default');
    expect(await tw.wait(t.id)).toBe('Hello D!');
  });

  it('answers NOT_FOUND for an id of a partition that holds no such task, INVALID_ARGUMENT for a malformed one', async () => {
    const unknown = `hot#9/${(await tw.start('hello', { queue: 'hot', args: ['x', 0] })).id.split('/')[1]}`;
    expect((await refusal(tw.status(unknown))).code).toBe(Code.NotFound);
    for (const bad of ['hot#/0190b6f4-7c3d-7abc-8def-0123456789ab', 'hot#01/0190b6f4-7c3d-7abc-8def-0123456789ab', 'hot#x/nope']) {
      const err = await refusal(tw.status(bad));
      expect(err.code, bad).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toContain('is not a task id');
    }
    // A partition is no queue name: Start and the latest-task shortcut refuse it before Redis.
    for (const call of [() => tw.start('hello', { queue: 'hot#1' }), () => tw.status({ queue: 'hot#1' })]) {
      const err = await refusal(call());
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toContain('"hot#1" is not a queue name');
    }
  });

  it('gives every Start with one idempotency key the same task, however many race', async () => {
    for (const key of ['idem-a', 'idem-b', 'idem-c']) {
      const tasks = await Promise.all(Array.from({ length: 12 }, () => tw.start('hello', { queue: 'hot', idempotencyKey: key, args: ['I', 0] })));
      expect(new Set(tasks.map((t) => t.id)).size, key).toBe(1);
      expect(await tw.wait(tasks[0]!.id)).toBe('Hello I!');
      // Finished, the key still names the same task.
      expect((await tw.start('hello', { queue: 'hot', idempotencyKey: key })).id).toBe(tasks[0]!.id);
    }
  });

  it('admits one task per exclusive key while it runs, however many Starts race', async () => {
    const keysUsed = ['ex-a', 'ex-b', 'ex-c', 'ex-d', 'ex-e'];
    const outcomes = await Promise.all(
      keysUsed.flatMap((key) =>
        Array.from({ length: 6 }, () =>
          tw.start('sleep', { queue: 'hot', exclusiveKey: key, args: [1] }).then(
            (t) => ({ key, task: t }),
            (err: unknown) => ({ key, error: ConnectError.from(err) }),
          ),
        ),
      ),
    );
    const holders = new Map<string, Task>();
    for (const o of outcomes) {
      if ('task' in o) {
        expect(holders.has(o.key), `two tasks admitted for ${o.key}`).toBe(false);
        holders.set(o.key, o.task);
      } else {
        expect(o.error.code).toBe(Code.AlreadyExists);
      }
    }
    expect([...holders.keys()].sort()).toEqual(keysUsed);
    // The keys went to more than one partition: the guarantee does not rely on one.
    expect(new Set([...holders.values()].map((t) => partitionOf(t.id))).size).toBeGreaterThan(1);
    for (const [key, t] of holders) {
      expect(resultOf(await watchToEnd(t.id))).toEqual({ slept: 1 });
      // The latest for the key is its task, read from the key's partition.
      expect((await tw.status({ exclusiveKey: key, queue: 'hot' })).id).toBe(t.id);
    }
    // Ended, the key is free again, and the latest for it moves on.
    const again = await tw.start('hello', { queue: 'hot', exclusiveKey: 'ex-a', args: ['again', 0] });
    expect(partitionOf(again.id)).toBe(partitionOf(holders.get('ex-a')!.id));
    expect((await tw.status({ exclusiveKey: 'ex-a', queue: 'hot' })).id).toBe(again.id);
  });

  it('resolves the latest task on the queue as the newest over all partitions', async () => {
    let last: Task | undefined;
    const seen = new Set<number>();
    for (let i = 0; i < 8; i++) {
      if (last) await pastMillisecondOf(last.id);
      last = await tw.start('hello', { queue: 'hot', args: [`L${i}`, 0] });
      seen.add(partitionOf(last.id));
      expect((await tw.status({ queue: 'hot' })).id).toBe(last.id);
    }
    expect(seen.size, 'the latest moved over several partitions').toBeGreaterThan(1);
  });
});

describe('a task of a partitioned queue', () => {
  it('is cancelled in its partition: a running one terminated, a waiting one revoked', async () => {
    const worker = await stack.startWorker({ args: ['-c', '8'], env: { TASKWIRE_QUEUES: 'cancelled' } });
    const running = await startMany('cancelled', 3, 'sleep', [30]);
    await Promise.all(running.map((t) => new Follow(tw, t.id).until(isState(TaskState.STARTED), `${t.id} started`)));
    const waiting = await Promise.all(Array.from({ length: 3 }, () => tw.start('hello', { queue: 'cancelled', countdownMs: 3_600_000 })));
    expect(new Set(running.map((t) => partitionOf(t.id))).size).toBe(3);
    expect(new Set(waiting.map((t) => partitionOf(t.id))).size).toBe(3);
    const outcomes = await Promise.all([...running, ...waiting].map((t) => tw.cancel(t.id, { terminate: true })));
    expect(outcomes.map((o) => o.outcome)).toEqual([...running.map(() => CancelOutcome.REQUESTED), ...waiting.map(() => CancelOutcome.REVOKED)]);
    for (const t of [...running, ...waiting]) expect((await watchToEnd(t.id)).state, t.id).toBe(TaskState.REVOKED);
    await worker.stop(5000);
  });

  it('with a countdown runs when it is due, whichever partition it is in', async () => {
    const tasks = await Promise.all(Array.from({ length: 8 }, (_, i) => tw.start('hello', { queue: 'hot', countdownMs: 500, args: [`c${i}`, 0] })));
    expect(new Set(tasks.map((t) => partitionOf(t.id))).size).toBe(4);
    expect(await Promise.all(tasks.map((t) => tw.wait(t.id)))).toEqual(tasks.map((_, i) => `Hello c${i}!`));
  });
});

describe('a workflow on partitioned queues', () => {
  it("keeps its tasks of a queue in one partition, the workflow's on its own queue, and runs to its result", async () => {
    const wf = await tw.chain(tw.sig('add', 1, 1), tw.sig('add', 2)).start({ queue: 'hot' });
    expect(wf.id).toMatch(new RegExp(`^hot#[0-3]/${UUID}$`));
    expect(await tw.wait(wf.id)).toBe(4);
    const kids = (await tw.rpc.getStatus({ id: wf.id })).task!.children;
    expect(kids).toHaveLength(2);
    expect(new Set(kids.map((id) => queueOf(id))).size, 'both tasks in one partition of default').toBe(1);
    expect(kids[0]).toMatch(new RegExp(`^default#[0-2]/${UUID}$`));

    const group = await tw.group(...Array.from({ length: 6 }, (_, k) => tw.signature('add', { args: [k, k], queue: 'hot' }))).start({ queue: 'hot' });
    expect(await tw.wait(group.id)).toEqual([0, 2, 4, 6, 8, 10]);
    const members = (await tw.rpc.getStatus({ id: group.id })).task!.children;
    expect(members.map((id) => queueOf(id))).toEqual(members.map(() => queueOf(group.id)));
  });

  it('gives every StartWorkflow with one idempotency key the same workflow', async () => {
    const flows = await Promise.all(
      Array.from({ length: 6 }, () => tw.chain(tw.sig('add', 1, 1), tw.sig('add', 2)).start({ queue: 'hot', idempotencyKey: 'wf-once' })),
    );
    expect(new Set(flows.map((f) => f.id)).size).toBe(1);
    expect(await tw.wait(flows[0]!.id)).toBe(4);
  });
});

describe('ListTasks of a partitioned queue', () => {
  it('pages through every partition, newest first, each task once', async () => {
    // No worker reads "listed": its tasks stay PENDING, and the listing does not move.
    const started = await startMany('listed', 30);
    expect(new Set(started.map((t) => partitionOf(t.id))).size).toBe(4);
    const listed: Task[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const page = await tw.rpc.listTasks({ queue: 'listed', pageSize: 7, pageToken });
      expect(page.tasks.length).toBeLessThanOrEqual(7);
      listed.push(...page.tasks);
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken);
    expect(pages).toBeGreaterThanOrEqual(5);
    expect(listed.map((t) => t.id).sort()).toEqual(started.map((t) => t.id).sort());
    const created = listed.map((t) => Number(t.createdAt!.seconds) * 1000 + Math.floor(t.createdAt!.nanos / 1e6));
    expect(created).toEqual([...created].sort((a, b) => b - a));

    // A filter still applies across partitions.
    const none = await tw.rpc.listTasks({ queue: 'listed', states: [TaskState.SUCCESS] });
    expect(none.tasks).toEqual([]);
  });

  it("counts the queue's waiting tasks in /metrics under its name, adding up its partitions", async () => {
    const api = await stack.startApi({ env: { TASKWIRE_QUEUES: 'listed' } });
    try {
      const text = await (await fetch(`http://127.0.0.1:${api.port}/metrics`)).text();
      expect(text).toMatch(/^taskwire_queue_depth\{queue="listed"\} 30$/m);
      expect(text).not.toContain('listed#');
    } finally {
      await api.stop(5000);
    }
  });

  it('refuses a page token that is not one it wrote', async () => {
    for (const token of [Buffer.from('3').toString('base64url'), Buffer.from('1.2.x.4').toString('base64url'), 'nope!']) {
      const err = await refusal(tw.rpc.listTasks({ queue: 'listed', pageToken: token }));
      expect(err.code, token).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toMatch(/page_token/);
    }
  });
});

describe('WatchEvents of a partitioned queue', () => {
  it('sees the changes of tasks in every partition', async () => {
    const stop = new AbortController();
    const events = tw.rpc.watchEvents({ queue: 'watched' }, { signal: stop.signal })[Symbol.asyncIterator]();
    try {
      await events.next(); // the stream is live (subscribed before its first message)
      const tasks = await startMany('watched', 12);
      expect(new Set(tasks.map((t) => partitionOf(t.id))).size).toBe(3);
      const waiting = new Set(tasks.map((t) => t.id));
      while (waiting.size) {
        const next = await events.next();
        if (next.done) throw new Error('the WatchEvents stream ended');
        if (next.value.event.case !== 'task') continue;
        const t = next.value.event.value;
        expect(t.queue).toBe('watched');
        if (t.state === TaskState.SUCCESS) waiting.delete(t.id);
      }
    } finally {
      stop.abort();
    }
  });
});

describe('a worker of a partitioned queue SIGKILLed mid-run', () => {
  it('loses no task: another worker takes over the partitions it held', async () => {
    const a = await stack.startWorker({ args: ['-c', '6'], env: { TASKWIRE_QUEUES: 'crash', TASKWIRE_WORKER_NAME: 'crash-a' } });
    const tasks = await startMany('crash', 6, 'sleep', [5]);
    expect(new Set(tasks.map((t) => partitionOf(t.id))).size).toBe(3);
    await Promise.all(tasks.map((t) => new Follow(tw, t.id).until(isState(TaskState.STARTED), `${t.id} started`)));
    expect(await a.kill()).toBe('SIGKILL');
    const b: TaskwireProcess = await stack.startWorker({ args: ['-c', '6'], env: { TASKWIRE_QUEUES: 'crash', TASKWIRE_WORKER_NAME: 'crash-b' } });
    for (const t of tasks) {
      const end = await watchToEnd(t.id);
      expect(end.state, t.id).toBe(TaskState.SUCCESS);
      expect(end.worker).toBe('crash-b');
      expect(end.attempt).toBe(2);
    }
    await b.stop(5000);
  });
});

describe('a schedule of a partitioned queue', () => {
  it('lives in the partition its id maps to, and starts its runs there', async () => {
    await tw.createSchedule('hot-tick', 'hello', { everyMs: 1000, queue: 'hot', args: ['tick', 0], overlap: 'allow' });
    const schedule = await tw.getSchedule('hot-tick');
    expect(schedule.task?.queue).toBe('hot');
    const runs = await runsAtLeast(tw, 'hot-tick', 2, 'hot');
    await tw.deleteSchedule('hot-tick');
    const partitions = new Set(runs.map((r) => queueOf(r.id)));
    expect(partitions.size, 'every run in one partition').toBe(1);
    expect([...partitions][0]).toMatch(/^hot#[0-3]$/);
    for (const r of runs) expect(await tw.wait(r.id)).toBe('Hello tick!');
  });
});

describe('a queue declared partitioned in the tasks module (defineQueue)', () => {
  const TASKS = 'test/fixtures/partitionTasks.ts';

  it('spreads its tasks over its partitions in every process that loads the module', async () => {
    const api = await stack.startApi({ env: { TASKWIRE_TASKS: TASKS } });
    const worker = await stack.startWorker({ env: { TASKWIRE_TASKS: TASKS, TASKWIRE_QUEUES: 'declared' } });
    const client = new TaskwireClient({ baseUrl: `http://127.0.0.1:${api.port}` });
    const tasks = await Promise.all(Array.from({ length: 8 }, (_, i) => client.start('hello', { queue: 'declared', args: [`d${i}`, 0] })));
    for (const t of tasks) expect(t.id).toMatch(new RegExp(`^declared#[01]/${UUID}$`));
    expect(new Set(tasks.map((t) => partitionOf(t.id)))).toEqual(new Set([0, 1]));
    expect(await Promise.all(tasks.map((t) => client.wait(t.id)))).toEqual(tasks.map((_, i) => `Hello d${i}!`));
    await Promise.all([worker.stop(5000), api.stop(5000)]);
  });

  it('stops an API server or a worker whose setting gives the queue another count', async () => {
    for (const command of ['serve', 'worker']) {
      const { code, stderr } = await runTaskwire([command, '--port', '0'].slice(0, command === 'serve' ? 3 : 1), {
        REDIS_URL: stack.redis.url,
        TASKWIRE_TASKS: TASKS,
        TASKWIRE_QUEUE_PARTITIONS: 'declared=3',
      });
      expect(code, command).not.toBe(0);
      expect(stderr, command).toContain(
        'queue "declared" has 2 partition(s) in the tasks module (defineQueue) but 3 in --queue-partitions / TASKWIRE_QUEUE_PARTITIONS',
      );
    }
  });

  it('refuses a bad declaration where it is written', () => {
    expect(() => defineQueue('bad name', { partitions: 2 })).toThrow(/queue name "bad name" must be 1 to 64 letters/);
    expect(() => defineQueue('q', { partitions: 0 })).toThrow(/queue "q": partitions must be a whole number from 1 to 256; got 0/);
    expect(() => createRegistry(defineQueue('q', { partitions: 2 }), defineQueue('q', { partitions: 2 }))).toThrow(/queue "q" is defined twice/);
  });
});

describe('TASKWIRE_QUEUE_PARTITIONS', () => {
  it('reads queue=count pairs', () => {
    expect(loadConfig({}, { TASKWIRE_QUEUE_PARTITIONS: 'default=8, emails=4,one=1' }).queuePartitions).toEqual({ default: 8, emails: 4, one: 1 });
    expect(loadConfig({ 'queue-partitions': 'a=2' }, {}).queuePartitions).toEqual({ a: 2 });
    expect(loadConfig({}, {}).queuePartitions).toEqual({});
  });

  it('refuses a bad value with a message naming the setting and what is wrong', () => {
    const cases: [string, RegExp][] = [
      ['emails', /queue=partitions such as default=8,emails=4.*"emails" is not/],
      ['emails=0', /queue "emails" must have a whole number of partitions from 1 to 256; got "0"/],
      ['emails=257', /from 1 to 256; got "257"/],
      ['emails=2.5', /got "2.5"/],
      ['bad/name=2', /"bad\/name=2" is not/],
      ['a=2,a=3', /names queue "a" twice/],
    ];
    for (const [value, message] of cases) {
      let err: unknown;
      try {
        loadConfig({}, { TASKWIRE_QUEUE_PARTITIONS: value });
      } catch (e) {
        err = e;
      }
      expect(err, value).toBeInstanceOf(ConfigError);
      expect((err as Error).message, value).toMatch(/^--queue-partitions \/ TASKWIRE_QUEUE_PARTITIONS/);
      expect((err as Error).message, value).toMatch(message);
    }
  });

  it('stops a process given a bad value before it touches Redis', async () => {
    const { code, stderr } = await runTaskwire(['worker'], { REDIS_URL: stack.redis.url, TASKWIRE_QUEUE_PARTITIONS: 'hot=zero' });
    expect(code).not.toBe(0);
    expect(stderr).toContain('TASKWIRE_QUEUE_PARTITIONS: queue "hot" must have a whole number of partitions');
  });
});
