/**
 * The four RPCs through @grpc/grpc-js, the reference Node gRPC implementation, with a client
 * built by @grpc/proto-loader from the .proto files in proto/: nothing of the project's
 * Connect client or generated code is involved, as for a user of another gRPC stack.
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from './helpers/stack.js';

const PROTO = fileURLToPath(new URL('../proto/', import.meta.url));

// proto-loader resolves the google/protobuf/*.proto imports from the copies protobufjs ships.
const definition = protoLoader.loadSync(['taskwire/v1/task_service.proto'], {
  includeDirs: [PROTO],
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const loaded = grpc.loadPackageDefinition(definition) as any;
const TaskService = loaded.taskwire.v1.TaskService as typeof grpc.Client;

/** google.rpc.Status and its details, decoded with protobufjs from proto/ too. */
const rpcRoot = new protobuf.Root();
rpcRoot.resolvePath = (_origin, target) => (target.startsWith('google/protobuf/') ? target : PROTO + target);
rpcRoot.loadSync(['google/protobuf/any.proto', 'google/rpc/error_details.proto']);
protobuf.parse(
  `syntax = "proto3"; package google.rpc;
   message Status { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; }`,
  rpcRoot,
);
const StatusType = rpcRoot.lookupType('google.rpc.Status');

interface WireTask {
  id: string;
  name: string;
  state: string;
  args: { values: { stringValue?: string; numberValue?: number; kind: string }[] };
  result: { kind: string; stringValue?: string; structValue?: unknown } | null;
  error: { type: string; message: string } | null;
  version: string;
  attempt: number;
  worker: string;
  createdAt: { seconds: string; nanos: number } | null;
  startedAt: { seconds: string; nanos: number } | null;
  finishedAt: { seconds: string; nanos: number } | null;
  cancelRequested: boolean;
}

let stack: Stack;
let client: any;

beforeAll(async () => {
  stack = await startStack();
  client = new TaskService(`127.0.0.1:${stack.api.port}`, grpc.credentials.createInsecure());
});
afterAll(async () => {
  client?.close();
  await stack?.stop();
});

function unary<T>(method: string, request: object): Promise<T> {
  return new Promise((resolve, reject) => {
    client[method](request, (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res)));
  });
}

async function unaryError(method: string, request: object): Promise<grpc.ServiceError> {
  try {
    await unary(method, request);
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error(`${method} succeeded; an error was expected`);
}

/** Every message of a WatchStatus stream until it ends (or `until` says stop early). */
function watch(request: object, until?: (t: WireTask) => boolean): Promise<{ tasks: WireTask[]; heartbeats: number }> {
  return new Promise((resolve, reject) => {
    const call = client.watchStatus(request) as grpc.ClientReadableStream<any>;
    const tasks: WireTask[] = [];
    let heartbeats = 0;
    let stopped = false;
    call.on('data', (msg: any) => {
      if (msg.event === 'heartbeat') heartbeats++;
      else tasks.push(msg.task);
      if (!stopped && msg.task && until?.(msg.task)) {
        stopped = true;
        call.cancel();
        resolve({ tasks, heartbeats });
      }
    });
    call.on('error', (err: grpc.ServiceError) => {
      if (stopped && err.code === grpc.status.CANCELLED) return;
      reject(err);
    });
    call.on('end', () => resolve({ tasks, heartbeats }));
  });
}

const list = (...values: string[]) => ({ values: values.map((stringValue) => ({ stringValue })) });

describe('TaskService through @grpc/grpc-js', () => {
  it('Start, WatchStatus to SUCCESS and GetStatus', async () => {
    const { task } = await unary<{ task: WireTask }>('start', { name: 'hello', args: list('Lucy') });
    expect(task.name).toBe('hello');
    expect(task.state).toBe('TASK_STATE_PENDING');
    expect(task.version).toBe('1');
    expect(task.args.values.map((v) => v.stringValue)).toEqual(['Lucy']);

    const { tasks } = await watch({ id: task.id, afterVersion: 0 });
    expect(tasks.map((t) => [t.version, t.state])).toEqual([
      ['1', 'TASK_STATE_PENDING'],
      ['2', 'TASK_STATE_STARTED'],
      ['3', 'TASK_STATE_SUCCESS'],
    ]);
    const last = tasks.at(-1)!;
    expect(last.result).toMatchObject({ kind: 'stringValue', stringValue: 'Hello Lucy!' });
    // Records from the event log carry the immutable fields too.
    expect(tasks.every((t) => t.name === 'hello' && t.args.values[0]?.stringValue === 'Lucy')).toBe(true);

    const status = await unary<{ task: WireTask }>('getStatus', { id: task.id });
    expect(status.task.state).toBe('TASK_STATE_SUCCESS');
    expect(status.task.result?.stringValue).toBe('Hello Lucy!');
    expect(status.task.attempt).toBe(1);
    expect(status.task.version).toBe('3');
    expect(status.task.worker).not.toBe('');
    expect(Number(status.task.createdAt!.seconds)).toBeGreaterThan(1_700_000_000);
    expect(status.task.finishedAt).not.toBeNull();
  });

  it('a watch started on a finished task gets the final record and ends', async () => {
    const { task } = await unary<{ task: WireTask }>('start', { name: 'hello', args: list('Done') });
    await watch({ id: task.id });
    const { tasks } = await watch({ id: task.id });
    expect(tasks).toHaveLength(1);
    expect(tasks[0]!.state).toBe('TASK_STATE_SUCCESS');
    expect(tasks[0]!.version).toBe('3');
  });

  it('Cancel of a running sleep fires its signal and ends it REVOKED', async () => {
    const { task } = await unary<{ task: WireTask }>('start', { name: 'sleep', args: { values: [{ numberValue: 30 }] } });
    const started = await watch({ id: task.id }, (t) => t.state === 'TASK_STATE_STARTED');
    expect(started.tasks.at(-1)!.state).toBe('TASK_STATE_STARTED');

    const res = await unary<{ task: WireTask; outcome: string; message: string }>('cancel', { id: task.id });
    expect(res.outcome).toBe('CANCEL_OUTCOME_REQUESTED');
    expect(res.task.cancelRequested).toBe(true);

    const { tasks } = await watch({ id: task.id, afterVersion: started.tasks.at(-1)!.version });
    const last = tasks.at(-1)!;
    expect(last.state).toBe('TASK_STATE_REVOKED');
    expect(last.result).toBeNull();
    expect(last.error?.type).toBeTruthy();
    // It stopped on the signal, long before its 30 seconds: it was not the sleep that ended.
    expect(Number(last.finishedAt!.seconds) - Number(last.startedAt!.seconds)).toBeLessThan(25);

    const again = await unary<{ outcome: string }>('cancel', { id: task.id });
    expect(again.outcome).toBe('CANCEL_OUTCOME_ALREADY_FINISHED');
  });

  it('Cancel of a waiting task revokes it at once', async () => {
    const { task } = await unary<{ task: WireTask }>('start', { name: 'hello', countdown: { seconds: 600 } });
    const res = await unary<{ task: WireTask; outcome: string }>('cancel', { id: task.id, reason: 'not needed' });
    expect(res.outcome).toBe('CANCEL_OUTCOME_REVOKED');
    expect(res.task.state).toBe('TASK_STATE_REVOKED');
    expect(res.task.attempt).toBe(0);
    expect(res.task.error?.message).toContain('not needed');
  });

  it('errors arrive as gRPC status codes with google.rpc details', async () => {
    const unknownName = await unaryError('start', { name: 'nope' });
    expect(unknownName.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(unknownName.details).toMatch(/known tasks: add, fail, hello, progress, sleep, spin, tsum, unserializable/);
    const bin = unknownName.metadata.get('grpc-status-details-bin')[0] as Buffer;
    const status = StatusType.toObject(StatusType.decode(bin)) as { code: number; details: { type_url: string; value: Uint8Array }[] };
    expect(status.code).toBe(grpc.status.INVALID_ARGUMENT);
    const byType = new Map(status.details.map((d) => [d.type_url.replace(/^.*\//, ''), d.value]));
    const badRequest = rpcRoot.lookupType('google.rpc.BadRequest').decode(byType.get('google.rpc.BadRequest')!) as any;
    expect(badRequest.fieldViolations[0].field).toBe('name');
    const info = rpcRoot.lookupType('google.rpc.ErrorInfo').decode(byType.get('google.rpc.ErrorInfo')!) as any;
    expect(info.reason).toBe('INVALID_ARGUMENT');

    // The message reads the same after grpc-js's decoding, whatever characters it holds.
    const odd = await unaryError('start', { name: 'nöpe, 100%: ok?' });
    expect(odd.details).toBe(
      'name: no task is registered as "nöpe, 100%: ok?"; known tasks: add, fail, hello, progress, sleep, spin, tsum, unserializable',
    );

    const malformed = await unaryError('getStatus', { id: 'nope' });
    expect(malformed.code).toBe(grpc.status.INVALID_ARGUMENT);
    const missing = await unaryError('getStatus', { id: '01890000-0000-7000-8000-000000000000' });
    expect(missing.code).toBe(grpc.status.NOT_FOUND);
    const missingCancel = await unaryError('cancel', { id: '01890000-0000-7000-8000-000000000000' });
    expect(missingCancel.code).toBe(grpc.status.NOT_FOUND);
    await expect(watch({ id: '01890000-0000-7000-8000-000000000000' })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    await expect(watch({ id: 'nope' })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
  });
});
