/**
 * Limits, each refused with RESOURCE_EXHAUSTED and a message naming the limit: the size of
 * a request, the size of a task's args, watches on one connection, streams on one server.
 */
import { Code, ConnectError } from '@connectrpc/connect';
import { createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Health, HealthCheckResponse_ServingStatus } from '../gen/grpc/health/v1/health_pb.js';
import { createTaskwireClient, type Task, type TaskwireClient } from '../src/client/index.js';
import { hello } from '../src/tasks/examples.js';
import { startStack, type Stack } from './helpers/stack.js';
import { refused } from './helpers/refused.js';

let stack: Stack;
beforeAll(async () => {
  // No worker: the tasks stay PENDING, so their watches stay open.
  stack = await startStack({
    workers: 0,
    env: {
      TASKWIRE_MAX_PAYLOAD: '1000',
      TASKWIRE_MAX_REQUEST: '4096',
      TASKWIRE_MAX_WATCHERS_PER_CONNECTION: '2',
      TASKWIRE_MAX_STREAMS: '4',
    },
  });
});
afterAll(async () => {
  await stack?.stop();
});

/** A watch that has received its first message (the stream is open on the server). */
async function openWatch(client: TaskwireClient, task: Task, ctl: AbortController) {
  const stream = client.watch(task.id, { signal: ctl.signal });
  const first = await stream.next();
  expect(first.value?.id).toBe(task.id);
  return stream;
}

describe('request and args size', () => {
  it('refuses args over TASKWIRE_MAX_PAYLOAD with RESOURCE_EXHAUSTED, saying how big they were', async () => {
    const err = await refused(stack.client.start(hello, { args: ['x'.repeat(2000)] }));
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.rawMessage).toBe('args and kwargs take 2006 bytes of JSON; the limit is 1000');
  });

  it('refuses a request message over TASKWIRE_MAX_REQUEST before reading it', async () => {
    const err = await refused(stack.client.start(hello, { args: ['x'.repeat(10_000)] }));
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.rawMessage).toMatch(/message size \d+ is larger than configured readMaxBytes 4096/);

    // The same over the Connect protocol (curl): HTTP 429 with the code in the JSON body.
    const res = await fetch(`${stack.baseUrl}/taskwire.v1.TaskService/Start`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'hello', args: ['x'.repeat(10_000)] }),
    });
    expect(res.status).toBe(429);
    expect(await res.json()).toMatchObject({ code: 'resource_exhausted' });
  });
});

describe('streams', () => {
  it('refuses a third watch on one connection, and a fifth stream on the server', async () => {
    const tasks = await Promise.all([1, 2, 3, 4, 5].map(() => stack.client.start(hello, { countdownMs: 3_600_000 })));
    const ctl = new AbortController();
    try {
      // Connection A: two watches, its limit.
      const a = createTaskwireClient({ baseUrl: stack.baseUrl });
      await openWatch(a, tasks[0]!, ctl);
      await openWatch(a, tasks[1]!, ctl);
      const third = await refused(a.watch(tasks[2]!.id).next());
      expect(third.code).toBe(Code.ResourceExhausted);
      expect(third.rawMessage).toBe(
        'this connection has 2 watches open, the limit per connection (TASKWIRE_MAX_WATCHERS_PER_CONNECTION); close one or open another connection',
      );
      // Unary calls on the same connection are not limited.
      expect((await a.status(tasks[2]!.id)).id).toBe(tasks[2]!.id);

      // Connections B and C: one watch each, which makes four streams on the server.
      const b = createTaskwireClient({ baseUrl: stack.baseUrl });
      await openWatch(b, tasks[2]!, ctl);
      const c = createTaskwireClient({ baseUrl: stack.baseUrl });
      await openWatch(c, tasks[3]!, ctl);
      const d = createTaskwireClient({ baseUrl: stack.baseUrl });
      const fifth = await refused(d.watch(tasks[4]!.id).next());
      expect(fifth.code).toBe(Code.ResourceExhausted);
      expect(fifth.rawMessage).toBe('this server has 4 streams open, its limit (TASKWIRE_MAX_STREAMS); try again later or use another server');
      // Health checks still answer.
      const health = createClient(Health, createGrpcTransport({ baseUrl: stack.baseUrl }));
      expect((await health.check({})).status).toBe(HealthCheckResponse_ServingStatus.SERVING);

      // Closing the watches frees their places (the server lets go when it sees the cancel).
      ctl.abort();
      const deadline = Date.now() + 10_000;
      for (;;) {
        const again = new AbortController();
        try {
          await openWatch(d, tasks[4]!, again);
          again.abort();
          break;
        } catch (err) {
          if (ConnectError.from(err).code !== Code.ResourceExhausted || Date.now() > deadline) throw err;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    } finally {
      ctl.abort();
    }
  });
});
