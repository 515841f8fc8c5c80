/**
 * A busy queue's slot moves to another master (CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE
 * in batches, SETSLOT NODE on every master) while its tasks run and watches are open: every
 * task still ends SUCCESS after one attempt, and every watch sees each version once, in order.
 */
import calculateSlot from 'cluster-key-slot';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code, ConnectError, TaskState, TaskwireClient, type Task } from '../src/client/index.js';
import { keys } from '../src/store/keys.js';
import { startStack, type Stack } from './helpers/stack.js';

let stack: Stack;
let queue: string;
beforeAll(async () => {
  stack = await startStack({ cluster: {}, workers: 0 });
  queue = stack.cluster!.queuesPerMaster('m')[0]!;
  stack.workers.push(await stack.startWorker({ env: { TASKWIRE_QUEUES: queue, TASKWIRE_CONCURRENCY: '8' } }));
}, 60_000);
afterAll(async () => {
  await stack?.stop();
});

const node = (port: number) => new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1 });

/** Move `slot` from the master on `from` to the one on `to`, a few keys at a time. */
async function migrateSlot(slot: number, from: number, to: number, masters: number[]): Promise<void> {
  const src = node(from);
  const dst = node(to);
  try {
    const srcId = (await src.cluster('MYID')) as string;
    const dstId = (await dst.cluster('MYID')) as string;
    await dst.cluster('SETSLOT', slot, 'IMPORTING', srcId);
    await src.cluster('SETSLOT', slot, 'MIGRATING', dstId);
    for (;;) {
      const batch = (await src.cluster('GETKEYSINSLOT', slot, 5)) as string[];
      if (batch.length === 0) break;
      await src.migrate('127.0.0.1', to, '', 0, 5000, 'KEYS', ...batch);
      await new Promise((r) => setTimeout(r, 20)); // tasks go on running between batches
    }
    for (const port of [to, from, ...masters.filter((p) => p !== to && p !== from)]) {
      const r = node(port);
      await r.cluster('SETSLOT', slot, 'NODE', dstId).finally(() => r.disconnect());
    }
  } finally {
    src.disconnect();
    dst.disconnect();
  }
}

/** Every version of the task as WatchStatus gives it from its creation (resuming by itself). */
async function versions(id: string): Promise<Task[]> {
  const seen: Task[] = [];
  for await (const t of stack.client.watch(id, { afterVersion: 0 })) seen.push(t);
  return seen;
}

describe('a slot moving to another master', () => {
  it('loses, repeats and skips nothing while tasks run and watches are open', async () => {
    const masters = await stack.cluster!.masters();
    const slot = calculateSlot(keys.stream(queue));
    const [from, to] = [masters[0]!, masters[1]!];

    const stop = new AbortController();
    const events = new Map<string, bigint[]>();
    let eventsError: ConnectError | undefined;
    const stream = stack.client.rpc.watchEvents({ queue }, { signal: stop.signal });
    const eventsDone = (async () => {
      try {
        for await (const e of stream) {
          if (e.event.case !== 'task') continue;
          const t = e.event.value;
          events.set(t.id, [...(events.get(t.id) ?? []), t.version]);
        }
      } catch (err) {
        eventsError = ConnectError.from(err);
      }
    })();

    const started: Task[] = [];
    const refused: string[] = [];
    const starting = (async () => {
      for (let i = 0; i < 20; i++) {
        const res = await stack.client.rpc.startMany({
          requests: Array.from({ length: 10 }, () => TaskwireClient.startRequest('hello', { kwargs: { seconds: 0.05 }, queue })),
        });
        for (const r of res.results) {
          if (r.outcome.case === 'task') started.push(r.outcome.value);
          else refused.push(JSON.stringify(r.outcome.value, (_, v) => (typeof v === 'bigint' ? String(v) : v)).slice(0, 300));
        }
      }
    })();
    const watched = Promise.all(
      (await Promise.all([0, 1, 2].map(() => stack.client.start('sleep', { args: [1], queue })))).map((t) => versions(t.id)),
    );

    await migrateSlot(slot, from, to, masters);
    await starting;
    expect(refused).toEqual([]);
    expect(started).toHaveLength(200);

    for (const t of started) {
      const end = await stack.client.wait(t.id).then(() => stack.client.status(t.id));
      expect(end.state).toBe(TaskState.SUCCESS);
      expect(end.attempt).toBe(1);
    }
    for (const seen of await watched) {
      expect(seen.map((t) => Number(t.version))).toEqual(seen.map((_, i) => i + 1));
      expect(seen.at(-1)?.state).toBe(TaskState.SUCCESS);
    }
    stop.abort();
    await eventsDone;
    // The events stream either went on through the move or ended saying so: never a gap.
    if (eventsError && eventsError.code !== Code.Canceled) expect(eventsError.code).toBe(Code.Unavailable);
    for (const [id, vs] of events) {
      for (let i = 1; i < vs.length; i++) expect(vs[i], `versions of ${id}: ${vs.join(',')}`).toBe(vs[i - 1]! + 1n);
    }
    // The slot is on its new master now.
    const dst = node(to);
    try {
      expect(await dst.exists(keys.stream(queue))).toBe(1);
    } finally {
      dst.disconnect();
    }
  }, 120_000);
});
