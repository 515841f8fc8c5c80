/**
 * WatchEvents never leaves a silent gap: a consumer that falls too far behind is ended
 * with RESOURCE_EXHAUSTED (the API's memory stays bounded), and a stream whose server lost
 * its Redis subscription (events published meanwhile are not heard again) is ended with
 * UNAVAILABLE, both with a message saying how to resume.
 */
import http2 from 'node:http2';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code, ConnectError } from '../src/client/index.js';
import { redisClient } from './helpers/redis.js';
import { startStack, type Stack } from './helpers/stack.js';

const BACKLOG = 50;
// No worker reads this queue: each Start is one event.
const QUEUE = 'nobody';

let stack: Stack;
let redis: Redis;

beforeAll(async () => {
  stack = await startStack({ workers: 0, env: { TASKWIRE_MAX_STREAM_BACKLOG: String(BACKLOG) } });
  redis = redisClient(stack.redis.url);
});
afterAll(async () => {
  redis?.disconnect();
  await stack?.stop();
});

async function startTasks(n: number): Promise<void> {
  for (let done = 0; done < n; done += 500) {
    const requests = Array.from({ length: Math.min(500, n - done) }, () => ({ name: 'hello', queue: QUEUE }));
    await stack.client.rpc.startMany({ requests });
  }
}

describe('WatchEvents', () => {
  it('ends a consumer that stops reading with RESOURCE_EXHAUSTED once it is the backlog behind', async () => {
    // A raw HTTP/2 client with a tiny flow-control window that reads nothing for a while.
    const session = http2.connect(stack.baseUrl, { settings: { initialWindowSize: 1024 } });
    try {
      const stream = session.request({
        ':method': 'POST',
        ':path': '/taskwire.v1.TaskService/WatchEvents',
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      stream.end(Buffer.from([0, 0, 0, 0, 0]));
      stream.pause();
      const trailers = new Promise<http2.IncomingHttpHeaders | undefined>((resolve) => {
        stream.on('trailers', (t) => resolve(t));
        stream.on('close', () => resolve({ 'rst-code': String(stream.rstCode) }));
      });
      await startTasks(3000);
      let bytes = 0;
      stream.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
      });
      stream.resume();
      const t = await trailers;
      expect(t?.['grpc-status'], `the stream ended without a status after ${bytes} bytes`).toBe(String(Code.ResourceExhausted));
      expect(decodeURIComponent(String(t?.['grpc-message']))).toMatch(/fell 50 events behind \(TASKWIRE_MAX_STREAM_BACKLOG\)/);
    } finally {
      session.close();
    }
  });

  it('ends with UNAVAILABLE when the server loses its Redis subscription, never skipping events silently', async () => {
    const stop = new AbortController();
    const events = stack.client.rpc.watchEvents({ queue: QUEUE }, { signal: stop.signal })[Symbol.asyncIterator]();
    try {
      await events.next(); // the stream is live
      await redis.client('KILL', 'TYPE', 'pubsub');
      // Published after the subscriber is gone or reconnecting: the stream must not go on as if
      // nothing was missed.
      await stack.client.start('hello', { queue: QUEUE });
      let error: ConnectError | undefined;
      for (;;) {
        const next = await events.next().catch((e: unknown) => {
          error = ConnectError.from(e);
          return undefined;
        });
        if (!next) break;
        if (next.done) break;
        expect(next.value.event.case, 'an event arrived after the subscription broke, with no status saying what was missed').toBe('heartbeat');
      }
      expect(error?.code, error?.rawMessage).toBe(Code.Unavailable);
      expect(error?.rawMessage).toMatch(/subscription was interrupted.*ListTasks/);
    } finally {
      stop.abort();
    }
  });
});
