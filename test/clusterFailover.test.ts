/**
 * A master fails over to its replica (CLUSTER FAILOVER on the replica) while its queue's
 * tasks run and watches are open: no task is lost or stuck, and every watch sees each
 * version once, in order.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code, TaskState, TaskwireClient, type Task } from '../src/client/index.js';
import { startStack, type Stack } from './helpers/stack.js';
import { waitClusterOk } from './helpers/cluster.js';

let stack: Stack;
let queue: string;
beforeAll(async () => {
  stack = await startStack({ cluster: { replicas: 1 }, workers: 0 });
  queue = stack.cluster!.queuesPerMaster('f')[0]!;
  stack.workers.push(await stack.startWorker({ env: { TASKWIRE_QUEUES: queue, TASKWIRE_CONCURRENCY: '8' } }));
}, 60_000);
afterAll(async () => {
  await stack?.stop();
});

const node = (port: number) => new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1 });

async function versions(id: string): Promise<Task[]> {
  const seen: Task[] = [];
  for await (const t of stack.client.watch(id, { afterVersion: 0 })) seen.push(t);
  return seen;
}

/** The port of the replica of the master on `port`. */
async function replicaOf(port: number): Promise<number> {
  const master = node(port);
  try {
    const id = (await master.cluster('MYID')) as string;
    const line = ((await master.cluster('NODES')) as string).split('\n').find((l) => l.split(' ')[3] === id);
    return Number(/:(\d+)@/.exec(line!)![1]);
  } finally {
    master.disconnect();
  }
}

describe('a master failing over to its replica', () => {
  it('loses no task and leaves none stuck, and watches see every version', async () => {
    const [master] = await stack.cluster!.masters();
    const replica = await replicaOf(master!);
    const watched = Promise.all(
      (await Promise.all([0, 1, 2].map(() => stack.client.start('sleep', { args: [2], queue })))).map((t) => versions(t.id)),
    );
    const started: Task[] = [];
    const refusedCodes = new Set<number>();
    const starting = (async () => {
      for (let i = 0; i < 10; i++) {
        const res = await stack.client.rpc.startMany({
          requests: Array.from({ length: 10 }, () => TaskwireClient.startRequest('hello', { kwargs: { seconds: 0.05 }, queue })),
        });
        for (const r of res.results) {
          if (r.outcome.case === 'task') started.push(r.outcome.value);
          else refusedCodes.add(r.outcome.value?.code ?? -1);
        }
      }
    })();
    const r = node(replica);
    try {
      await r.cluster('FAILOVER');
    } finally {
      r.disconnect();
    }
    await starting;
    await waitClusterOk(stack.cluster!.nodes.map((n) => n.port));
    expect(await stack.cluster!.masters()).toContain(replica);

    // A start refused during the switch answered UNAVAILABLE and wrote nothing: the rest ran.
    expect(started.length).toBeGreaterThan(0);
    expect([...refusedCodes].filter((c) => c !== Code.Unavailable)).toEqual([]);
    for (const t of started) {
      await stack.client.wait(t.id);
      const end = await stack.client.status(t.id);
      expect(end.state).toBe(TaskState.SUCCESS);
    }
    for (const seen of await watched) {
      expect(seen.map((t) => Number(t.version))).toEqual(seen.map((_, i) => i + 1));
      expect(seen.at(-1)?.state).toBe(TaskState.SUCCESS);
    }
  }, 120_000);
});
