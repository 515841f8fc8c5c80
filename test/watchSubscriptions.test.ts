/**
 * An API server subscribes only to what its open watches need (sharded pub/sub, one
 * channel per watched queue): nothing while nobody watches, a queue's channel while a
 * WatchStatus or WatchEvents of it is open, and no pattern subscription ever. A WatchEvents
 * of every queue also hears a queue created after it opened, from that queue's first task.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TaskState } from '../src/client/index.js';
import { channels } from '../src/store/keys.js';
import { redisClient } from './helpers/redis.js';
import { startStack, type Stack } from './helpers/stack.js';

let stack: Stack;
let redis: Redis;
let named = 0;
const randomName = (prefix: string) => `${prefix}-${process.pid}-${++named}`;

beforeAll(async () => {
  // No worker: its control channels would be the only other subscriptions.
  stack = await startStack({ workers: 0 });
  redis = redisClient(stack.redis.url);
});
afterAll(async () => {
  redis?.disconnect();
  await stack?.stop();
});

const subscribers = async (channel: string) => Number(((await redis.call('PUBSUB', 'SHARDNUMSUB', channel)) as [string, number])[1]);
const shardChannels = async () => ((await redis.call('PUBSUB', 'SHARDCHANNELS', 'taskwire:*')) as string[]).sort();

/** The API server's count of open watches, from its metrics. */
async function watchersOpen(): Promise<number> {
  const text = await (await fetch(`${stack.baseUrl}/metrics`)).text();
  return Number(/^taskwire_watchers (\d+)$/m.exec(text)?.[1]);
}

/** Reads until `check` holds: the server lets go of a stream a moment after its client did. */
async function until<T>(read: () => Promise<T>, check: (v: T) => boolean): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const v = await read();
    if (check(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('subscriptions follow the open watches', () => {
  it('an API server with no open watch is subscribed to no channel', async () => {
    await stack.client.start('hello', { queue: 'quiet' });
    expect(await shardChannels()).toEqual([]);
    expect(await redis.call('PUBSUB', 'NUMPAT')).toBe(0);
    expect(await redis.call('PUBSUB', 'CHANNELS')).toEqual([]);
  });

  it("opening a watch subscribes its queue's channel, once however many watch, and closing the last unsubscribes", async () => {
    const queue = randomName('watched');
    const channel = channels.events(queue);
    const a = await stack.client.start('hello', { queue });
    const b = await stack.client.start('hello', { queue });
    const stops = [new AbortController(), new AbortController(), new AbortController()];
    const watches = [stack.client.watch(a.id, { signal: stops[0]!.signal }), stack.client.watch(b.id, { signal: stops[1]!.signal })];
    // The first record of a watch is read after its subscription is live.
    for (const w of watches) expect((await w.next()).value?.state).toBe(TaskState.PENDING);
    expect(await subscribers(channel)).toBe(1);
    expect(await shardChannels()).toEqual([channel]);

    const events = stack.client.rpc.watchEvents({ queue }, { signal: stops[2]!.signal })[Symbol.asyncIterator]();
    const c = await stack.client.start('hello', { queue });
    const first = await events.next();
    expect(first.value?.event.case === 'task' && first.value.event.value.id).toBe(c.id);
    expect(await subscribers(channel)).toBe(1);

    stops[0]!.abort();
    stops[2]!.abort();
    await watches[0]!.return(undefined);
    // Once the server has let the two go, one watch is still open: the channel stays
    // subscribed, and its changes still arrive.
    expect(await until(watchersOpen, (n) => n === 1)).toBe(1);
    expect(await subscribers(channel)).toBe(1);
    await stack.client.cancel(b.id);
    expect((await watches[1]!.next()).value?.state).toBe(TaskState.REVOKED);
    expect(await watches[1]!.next()).toMatchObject({ done: true });
    expect(
      await until(
        () => subscribers(channel),
        (n) => n === 0,
      ),
    ).toBe(0);
    expect(await until(shardChannels, (list) => list.length === 0)).toEqual([]);
  });

  it('a WatchEvents of every queue sees the first task of a queue created after it opened', async () => {
    const stop = new AbortController();
    const events = stack.client.rpc.watchEvents({}, { signal: stop.signal })[Symbol.asyncIterator]();
    try {
      // The first heartbeat: the stream is open and subscribed.
      expect((await events.next()).value?.event.case).toBe('heartbeat');
      const queue = randomName('later');
      expect(await subscribers(channels.events(queue))).toBe(0);
      const task = await stack.client.start('hello', { queue });
      const seen: string[] = [];
      for (;;) {
        const next = await events.next();
        const ev = next.value?.event;
        if (ev?.case !== 'task') continue;
        seen.push(`${ev.value.id} v${ev.value.version}`);
        if (ev.value.id === task.id) break;
      }
      expect(seen).toEqual([`${task.id} v1`]);
      expect(await subscribers(channels.events(queue))).toBe(1);
      // Its later changes come too, once each.
      await stack.client.cancel(task.id);
      const next = await events.next();
      const ev = next.value?.event;
      expect(ev?.case === 'task' && [ev.value.id, ev.value.version, ev.value.state]).toEqual([task.id, 2n, TaskState.REVOKED]);
    } finally {
      stop.abort();
    }
    expect(await until(shardChannels, (list) => list.length === 0)).toEqual([]);
  });
});
