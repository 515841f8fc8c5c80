/**
 * The canceller against a private Redis: a request published on a queue's control channel
 * reaches the slot of the task it names (abort fires the handler's signal, terminate stops
 * it by force and wins over an abort), a request heard while the task's claim was in flight
 * is applied once it runs, and a countdown's announcement wakes the promoter.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/log.js';
import { channels } from '../src/store/keys.js';
import { type Cancellable, Canceller } from '../src/worker/canceller.js';
import { redisClient, startRedis, type RedisServer } from './helpers/redis.js';

const log = createLogger('test', { level: 'silent', format: 'json' });
const queue = 'cancels';

/** A running task whose slot records what was done to it, and says when. */
function runningTask(): Cancellable & { done: string[]; next: () => Promise<string> } {
  const done: string[] = [];
  let heard: ((what: string) => void) | undefined;
  const record = (what: string) => {
    done.push(what);
    heard?.(what);
    heard = undefined;
  };
  return {
    done,
    next: () => new Promise((r) => (heard = r)),
    slot: {
      abort: (id: string) => record(`abort ${id}`),
      kill: async (why) => record(`kill ${why}`),
    },
  };
}

let server: RedisServer;
let pub: Redis;
let canceller: Canceller;
const running = new Map<string, Cancellable>();
const announced: number[] = [];
let onAnnounce: (() => void) | undefined;

beforeAll(async () => {
  server = await startRedis();
  pub = redisClient(server.url);
  canceller = new Canceller(
    redisClient(server.url),
    [queue],
    (id) => running.get(id),
    (due) => {
      announced.push(due);
      onAnnounce?.();
    },
    log,
  );
  await canceller.start();
});
afterAll(async () => {
  await canceller?.stop();
  pub?.disconnect();
  await server?.stop();
});

describe('canceller', () => {
  it('aborts a running task on request, then terminates it when asked again with terminate', async () => {
    const task = runningTask();
    running.set('t1', task);
    let next = task.next();
    await pub.spublish(channels.control(queue), 't1\nabort');
    expect(await next).toBe('abort t1');
    next = task.next();
    await pub.spublish(channels.control(queue), 't1\nterminate');
    expect(await next).toBe('kill terminate');
    expect(task.cancel).toBe('terminate');
  });

  it('ignores an abort after a terminate, and a repeated request', async () => {
    const task = runningTask();
    running.set('t2', task);
    const next = task.next();
    await pub.spublish(channels.control(queue), 't2\nterminate');
    await next;
    await pub.spublish(channels.control(queue), 't2\nabort');
    await pub.spublish(channels.control(queue), 't2\nterminate');
    // A request for another task, published after those, arrives after them.
    const other = runningTask();
    running.set('t3', other);
    const marker = other.next();
    await pub.spublish(channels.control(queue), 't3\nabort');
    await marker;
    expect(task.done).toEqual(['kill terminate']);
  });

  it('applies a request heard before the task ran here once it begins', async () => {
    const announcedNow = new Promise<void>((r) => (onAnnounce = r));
    await pub.spublish(channels.control(queue), 't4\nterminate');
    // The announcement, published after the request, arrives after it.
    await pub.spublish(channels.control(queue), `due\n${Date.now()}`);
    await announcedNow;
    const task = runningTask();
    running.set('t4', task);
    canceller.began('t4');
    expect(task.done).toEqual(['kill terminate']);
    canceller.began('t4');
    expect(task.done).toEqual(['kill terminate']);
  });

  it('hands a countdown announcement to the promoter', async () => {
    const due = Date.now() + 60_000;
    const heard = new Promise<void>((r) => (onAnnounce = r));
    await pub.spublish(channels.control(queue), `due\n${due}`);
    await heard;
    expect(announced.at(-1)).toBe(due);
  });
});
