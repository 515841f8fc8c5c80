/**
 * Run: one server-streaming call that starts a task and streams its record to the terminal
 * state, over real gRPC and a real Redis — through the TS client (`run`, `start(…, { wait })`),
 * through @grpc/grpc-js built from proto/ alone, and from the shell (`taskwire start --wait`).
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code, ConnectError, TaskState, resultOf, type Task } from '../src/client/index.js';
import { serverStreamsOpen } from './helpers/metrics.js';
import { runTaskwire } from './helpers/processes.js';
import { startStack, type Stack } from './helpers/stack.js';

const PROTO = fileURLToPath(new URL('../proto/', import.meta.url));
const definition = protoLoader.loadSync(['taskwire/v1/task_service.proto'], {
  includeDirs: [PROTO],
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const GrpcTaskService = (grpc.loadPackageDefinition(definition) as any).taskwire.v1.TaskService as typeof grpc.Client;

let stack: Stack;
let grpcClient: any;

beforeAll(async () => {
  stack = await startStack({ workerArgs: ['--concurrency', '8'] });
  grpcClient = new GrpcTaskService(`127.0.0.1:${stack.api.port}`, grpc.credentials.createInsecure());
});
afterAll(async () => {
  grpcClient?.close();
  await stack?.stop();
});

async function collect(it: AsyncIterable<Task>): Promise<Task[]> {
  const seen: Task[] = [];
  for await (const t of it) seen.push(t);
  return seen;
}

async function rejection(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error('the call succeeded; an error was expected');
}

/** Every message of a Run stream read with grpc-js, and how it ended. */
function grpcRun(request: object, deadlineMs?: number): Promise<{ messages: any[]; error?: grpc.ServiceError }> {
  return new Promise((resolve) => {
    const options = deadlineMs === undefined ? {} : { deadline: Date.now() + deadlineMs };
    const call = grpcClient.run(request, options) as grpc.ClientReadableStream<any>;
    const messages: any[] = [];
    call.on('data', (m: any) => messages.push(m));
    call.on('error', (error: grpc.ServiceError) => resolve({ messages, error }));
    call.on('end', () => resolve({ messages }));
  });
}

describe('Run through the TS client', () => {
  it('streams every version from PENDING to SUCCESS, and start with wait resolves with the result', async () => {
    const seen = await collect(stack.client.run('hello', { args: ['Lucy'] }));
    expect(seen[0]!.state).toBe(TaskState.PENDING);
    expect(seen.map((t) => Number(t.version))).toEqual(seen.map((_, i) => i + 1));
    expect(new Set(seen.map((t) => t.id)).size).toBe(1);
    const last = seen.at(-1)!;
    expect(last.state).toBe(TaskState.SUCCESS);
    expect(resultOf(last)).toBe('Hello Lucy!');

    const done = await stack.client.start('hello', { args: ['Ada'], wait: true });
    expect(done.state).toBe(TaskState.SUCCESS);
    expect(resultOf(done)).toBe('Hello Ada!');
  });

  it('ends with the FAILURE record and its error', async () => {
    const done = await stack.client.start('fail', { args: ['boom'], wait: true });
    expect(done.state).toBe(TaskState.FAILURE);
    expect(done.error).toMatchObject({ type: 'Error', message: 'boom' });
  });

  it('a second Run with the same idempotency key follows the same task, and one after its end answers the terminal record alone', async () => {
    const key = `run-idem-${Date.now()}`;
    const [a, b] = await Promise.all([
      collect(stack.client.run('hello', { args: ['Bo', 0.3], idempotencyKey: key })),
      collect(stack.client.run('hello', { args: ['Bo', 0.3], idempotencyKey: key })),
    ]);
    expect(b.at(-1)!.id).toBe(a.at(-1)!.id);
    expect(a.at(-1)!.state).toBe(TaskState.SUCCESS);
    expect(b.at(-1)!.state).toBe(TaskState.SUCCESS);
    const again = await collect(stack.client.run('hello', { args: ['Bo', 0.3], idempotencyKey: key }));
    expect(again).toHaveLength(1);
    expect(again[0]!.id).toBe(a.at(-1)!.id);
    expect(again[0]!.version).toBe(a.at(-1)!.version);
    expect(resultOf(again[0]!)).toBe('Hello Bo!');
  });

  it('refuses an empty task name with INVALID_ARGUMENT, as Start does', async () => {
    const err = await rejection(collect(stack.client.run('', {})));
    expect(err.code).toBe(Code.InvalidArgument);
  });

  it('a second Run with a running exclusive key is refused as Start refuses it', async () => {
    const key = `run-excl-${Date.now()}`;
    const first = await stack.client.start('sleep', { args: [30], exclusiveKey: key });
    const err = await rejection(stack.client.start('sleep', { args: [30], exclusiveKey: key, wait: true }));
    const plain = await rejection(stack.client.start('sleep', { args: [30], exclusiveKey: key }));
    expect(err.code).toBe(plain.code);
    expect(err.code).not.toBe(Code.Unknown);
    await stack.client.cancel(first.id, { terminate: true });
  });

  it('a deadline shorter than the task fails with DEADLINE_EXCEEDED and the server lets go of the stream', async () => {
    const err = await rejection(stack.client.start('sleep', { args: [30], wait: true, timeoutMs: 500 }));
    expect(err.code).toBe(Code.DeadlineExceeded);
    expect(await serverStreamsOpen(stack.baseUrl, 0)).toBe(0);
  });

  it('an aborted signal ends the run with CANCELED', async () => {
    const ac = new AbortController();
    const seen: Task[] = [];
    const err = await rejection(
      (async () => {
        for await (const t of stack.client.run('sleep', { args: [30], signal: ac.signal })) {
          seen.push(t);
          ac.abort();
        }
      })(),
    );
    expect(err.code).toBe(Code.Canceled);
    expect(seen[0]!.state).toBe(TaskState.PENDING);
    expect(await serverStreamsOpen(stack.baseUrl, 0)).toBe(0);
    await stack.client.cancel(seen[0]!.id, { terminate: true });
  });
});

describe('Run through @grpc/grpc-js', () => {
  it('reads the stream from PENDING to SUCCESS, then the stream ends', async () => {
    const { messages, error } = await grpcRun({ name: 'hello', args: { values: [{ stringValue: 'Grace' }] } });
    expect(error).toBeUndefined();
    const tasks = messages.filter((m) => m.event === 'task').map((m) => m.task);
    expect(tasks[0].state).toBe('TASK_STATE_PENDING');
    expect(tasks.at(-1).state).toBe('TASK_STATE_SUCCESS');
    expect(tasks.at(-1).result.stringValue).toBe('Hello Grace!');
  });

  it('a deadline shorter than the task answers DEADLINE_EXCEEDED after the queued record', async () => {
    const { messages, error } = await grpcRun({ name: 'sleep', args: { values: [{ numberValue: 30 }] } }, 800);
    expect(error?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(messages[0].task.state).toBe('TASK_STATE_PENDING');
    expect(await serverStreamsOpen(stack.baseUrl, 0)).toBe(0);
  });

  it('an empty task name is refused with INVALID_ARGUMENT', async () => {
    const { messages, error } = await grpcRun({ name: '' });
    expect(messages).toEqual([]);
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
  });
});

// Each command is a fresh node process: a generous timeout.
describe('taskwire start --wait', { timeout: 60_000 }, () => {
  it('prints each record to the result and exits 0 on SUCCESS, 1 on FAILURE', async () => {
    const env = { TASKWIRE_SERVER: stack.baseUrl };
    const ok = await runTaskwire(['start', 'hello', '--args', '["Lucy"]', '--wait', '--json'], env);
    expect(ok.code).toBe(0);
    const records = ok.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(records[0]).toMatchObject({ name: 'hello', state: 'PENDING', version: 1 });
    expect(records.at(-1)).toMatchObject({ state: 'SUCCESS', result: 'Hello Lucy!' });

    const failed = await runTaskwire(['start', 'fail', '--args', '["boom"]', '--wait', '--json'], env);
    expect(failed.code).toBe(1);
    expect(JSON.parse(failed.stdout.trim().split('\n').at(-1)!)).toMatchObject({
      state: 'FAILURE',
      error: { type: 'Error', message: 'boom' },
    });
  });
});

describe('run() across a restart of its API server', () => {
  it('finishes through watch from the last version seen, every version once', async () => {
    const port = stack.api.port;
    const stream = stack.client.run('progress', { kwargs: { steps: 20, interval: 150 } });
    const seen: Task[] = [];
    for (;;) {
      const r = await stream.next();
      if (r.done) break;
      seen.push(r.value);
      if (r.value.version >= 4n) break;
    }
    expect(seen.at(-1)!.state).toBe(TaskState.STARTED);
    // The Run stream is cut; the same port again, as a restarted server would be.
    await stack.api.stop();
    stack.api = await stack.startApi({ args: ['--port', String(port)] });
    for await (const t of stream) seen.push(t);
    const final = seen.at(-1)!;
    expect(final.state).toBe(TaskState.SUCCESS);
    expect(seen.map((t) => Number(t.version))).toEqual(Array.from({ length: Number(final.version) }, (_, i) => i + 1));
  });
});
