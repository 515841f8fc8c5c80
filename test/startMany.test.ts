/**
 * Many starts at once: StartMany answers each request on its own, in order (a refused one
 * refuses only itself, with the code and details a Start alone would give), and the tasks of
 * a batch run in the order given. The TypeScript client sends the start() calls made
 * together as one StartMany; each caller still gets its own task or its own error.
 */
import { create } from '@bufbuild/protobuf';
import type { Interceptor } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { BadRequestSchema, ErrorInfoSchema } from '../gen/google/rpc/error_details_pb.js';
import { StartRequestSchema } from '../gen/taskwire/v1/task_service_pb.js';
import { Code, ConnectError, createTaskwireClient, resultOf, TaskState, TaskwireClient, type Task } from '../src/client/index.js';
import { startStack, type Stack } from './helpers/stack.js';

vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

let stack: Stack;
/** The RPCs the counting client made, by method name. */
const calls: string[] = [];
let counted: TaskwireClient;

beforeAll(async () => {
  // No worker at first: started tasks stay PENDING (and keep their exclusive keys).
  stack = await startStack({ workers: 0 });
  const count: Interceptor = (next) => (req) => {
    calls.push(req.method.name);
    return next(req);
  };
  counted = createTaskwireClient({ transport: createGrpcTransport({ baseUrl: stack.baseUrl, interceptors: [count] }) });
});
afterAll(async () => {
  await stack?.stop();
});

const request = (name: string, o: Parameters<typeof TaskwireClient.startRequest>[1] = {}) =>
  create(StartRequestSchema, TaskwireClient.startRequest(name, o));

/** What a refused start rejected with: code, message and details, comparable. */
async function refusal(p: Promise<unknown>) {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConnectError);
  const ce = err as ConnectError;
  return {
    code: ce.code,
    message: ce.rawMessage,
    info: ce.findDetails(ErrorInfoSchema).map((d) => ({ reason: d.reason, metadata: d.metadata })),
    fields: ce.findDetails(BadRequestSchema).flatMap((d) => d.fieldViolations.map((v) => v.field)),
  };
}

describe('StartMany', () => {
  it('answers each request on its own, in order, refusing only the bad ones', async () => {
    const res = await stack.client.rpc.startMany({
      requests: [
        request('hello', { args: ['Ada'] }),
        request('no-such-task'),
        request('hello', { exclusiveKey: 'report' }),
        request('hello', { exclusiveKey: 'report' }),
        request('hello', { idempotencyKey: 'order-7' }),
        request('hello', { idempotencyKey: 'order-7' }),
        request('hello', { countdownMs: -5 }),
      ],
    });
    const [ada, unknown, holder, second, idem, idemAgain, negative] = res.results.map((r) => r.outcome);

    expect(ada?.case).toBe('task');
    expect(unknown?.case).toBe('error');
    if (unknown?.case === 'error') {
      expect(unknown.value.code).toBe(Code.InvalidArgument);
      expect(unknown.value.message).toMatch(/no task is registered as "no-such-task"/);
    }
    expect(holder?.case).toBe('task');
    expect(second?.case).toBe('error');
    if (second?.case === 'error' && holder?.case === 'task') {
      expect(second.value.code).toBe(Code.AlreadyExists);
      expect(second.value.existingTaskId).toBe(holder.value.id);
    }
    expect(idem?.case).toBe('task');
    expect(idemAgain?.case).toBe('task');
    if (idem?.case === 'task' && idemAgain?.case === 'task') expect(idemAgain.value.id).toBe(idem.value.id);
    expect(negative?.case).toBe('error');

    // Every created task is there, PENDING, as the reply said; the refused ones left nothing.
    for (const o of [ada, holder, idem]) {
      if (o?.case !== 'task') continue;
      const now = await stack.client.status(o.value.id);
      expect(now.state).toBe(TaskState.PENDING);
      expect(now.version).toBe(o.value.version);
    }
    const listed = await stack.client.rpc.listTasks({ pageSize: 100 });
    expect(listed.tasks.map((t) => t.id).sort()).toEqual([ada, holder, idem].map((o) => (o?.case === 'task' ? o.value.id : '')).sort());
  });

  it('refuses more than 1000 requests at once, creating none', async () => {
    const before = (await stack.client.rpc.listTasks({ pageSize: 1000 })).tasks.length;
    const requests = Array.from({ length: 1001 }, () => request('hello'));
    const refused = await refusal(stack.client.rpc.startMany({ requests }));
    expect(refused.code).toBe(Code.ResourceExhausted);
    expect(refused.message).toMatch(/at most 1000 tasks per StartMany; got 1001/);
    expect((await stack.client.rpc.listTasks({ pageSize: 1000 })).tasks.length).toBe(before);
  });

  it('runs the tasks of a batch in the order given', async () => {
    const res = await stack.client.rpc.startMany({
      requests: Array.from({ length: 20 }, (_, i) => request('hello', { args: [`n${i}`], queue: 'ordered' })),
    });
    const ids = res.results.map((r) => (r.outcome.case === 'task' ? r.outcome.value.id : ''));
    expect(ids.every(Boolean)).toBe(true);
    const worker = await stack.startWorker({ args: ['-c', '1', '--queues', 'ordered'] });
    const done: Task[] = [];
    for (const id of ids) {
      let last: Task | undefined;
      for await (const t of stack.client.watch(id)) last = t;
      done.push(last!);
    }
    await worker.stop();
    expect(done.map((t) => resultOf(t))).toEqual(ids.map((_, i) => `Hello n${i}!`));
    const started = done.map((t) => Number(t.startedAt!.seconds) * 1e9 + t.startedAt!.nanos);
    expect(started).toEqual([...started].sort((a, b) => a - b));
  });
});

describe('the client sends start() calls made together as one StartMany', () => {
  it('gives each caller its own task, in one RPC', async () => {
    calls.length = 0;
    const tasks = await Promise.all(Array.from({ length: 50 }, (_, i) => counted.start('hello', { args: [`c${i}`] })));
    expect(calls).toEqual(['StartMany']);
    expect(new Set(tasks.map((t) => t.id)).size).toBe(50);
    for (const [i, t] of tasks.entries()) {
      expect(t.state).toBe(TaskState.PENDING);
      expect((await counted.status(t.id)).args?.values[0]?.kind).toEqual({ case: 'stringValue', value: `c${i}` });
    }

    calls.length = 0;
    await counted.start('hello');
    expect(calls).toEqual(['Start']); // a lone call is a plain Start
  });

  it('rejects a refused call with what a Start alone gives: code, message and details', async () => {
    const holder = await counted.start('hello', { exclusiveKey: 'nightly' });
    const aloneUnknown = await refusal(counted.start('no-such-task'));
    const aloneBusy = await refusal(counted.start('hello', { exclusiveKey: 'nightly' }));
    expect(aloneBusy.info).toEqual([{ reason: 'EXCLUSIVE_TASK_RUNNING', metadata: { running_task_id: holder.id, exclusive_key: 'nightly' } }]);
    expect(aloneUnknown.fields).toEqual(['name']);

    calls.length = 0;
    const together = [
      counted.start('hello'),
      counted.start('no-such-task'),
      counted.start('hello', { exclusiveKey: 'nightly' }),
      counted.start('hello'),
    ];
    const [ok1, unknown, busy, ok2] = await Promise.allSettled(together);
    expect(calls).toEqual(['StartMany']);
    expect(ok1?.status).toBe('fulfilled');
    expect(ok2?.status).toBe('fulfilled');
    expect(await refusal(together[1]!)).toEqual(aloneUnknown);
    expect(await refusal(together[2]!)).toEqual(aloneBusy);
    expect(unknown?.status).toBe('rejected');
    expect(busy?.status).toBe('rejected');
  });

  it('sends calls one by one when asked not to batch', async () => {
    const seen: string[] = [];
    const count: Interceptor = (next) => (req) => {
      seen.push(req.method.name);
      return next(req);
    };
    const one = createTaskwireClient({ batchStarts: false, transport: createGrpcTransport({ baseUrl: stack.baseUrl, interceptors: [count] }) });
    await Promise.all([one.start('hello'), one.start('hello'), one.start('hello')]);
    expect(seen).toEqual(['Start', 'Start', 'Start']);
  });
});
