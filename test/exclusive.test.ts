/**
 * Exclusive start (issue 3, the seed's "one task at a time"): while a task started with an
 * exclusive key is not terminal, every other Start with the key is refused with
 * ALREADY_EXISTS and the running task's id, whichever API server it reaches; the key is
 * freed by any terminal state (SUCCESS, FAILURE, REVOKED), and keys do not block each other.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { ErrorInfoSchema } from '../gen/google/rpc/error_details_pb.js';
import { ServerReflection } from '../gen/grpc/reflection/v1/reflection_pb.js';
import { CancelOutcome, Code, ConnectError, createTaskwireClient, TaskState, TERMINAL, type Task, type TaskwireClient } from '../src/client/index.js';
import { startStack, type Stack } from './helpers/stack.js';

let stack: Stack;
/** Clients of the two API server processes. */
let one: TaskwireClient;
let two: TaskwireClient;

beforeAll(async () => {
  stack = await startStack({ env: { TASKWIRE_LEASE: '2s' }, workerArgs: ['--concurrency', '2'] });
  const second = await stack.startApi();
  one = stack.client;
  two = createTaskwireClient({ baseUrl: `http://127.0.0.1:${second.port}` });
});
afterAll(async () => {
  await stack?.stop();
});

/** The record once it satisfies `until` (watched, not polled). */
async function watchUntil(client: TaskwireClient, id: string, until: (t: Task) => boolean): Promise<Task> {
  for await (const t of client.watch(id)) if (until(t)) return t;
  throw new Error(`the watch of ${id} ended without reaching the expected state`);
}
const finalOf = (client: TaskwireClient, id: string) => watchUntil(client, id, (t) => TERMINAL.has(t.state));

/** What a refused exclusive Start tells its caller. */
function refusal(err: unknown): { code: Code; message: string; runningId: string | undefined; reason: string | undefined } {
  const ce = ConnectError.from(err);
  const info = ce.findDetails(ErrorInfoSchema)[0];
  return { code: ce.code, message: ce.rawMessage, runningId: info?.metadata.running_task_id, reason: info?.reason };
}

async function expectRefused(p: Promise<unknown>, runningId: string): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'the Start was accepted but should have been refused').toBeDefined();
  const r = refusal(err);
  expect(r.code).toBe(Code.AlreadyExists);
  expect(r.message).toMatch(/already running/);
  expect(r.runningId).toBe(runningId);
}

describe('exclusive start', () => {
  it('admits exactly one of 50 concurrent Starts spread over two API servers, then the next after it finished', async () => {
    const key = 'nightly-report';
    // Long enough that the task is still running when the last of the 50 is answered.
    const settled = await Promise.allSettled(
      Array.from({ length: 50 }, (_, i) => (i % 2 ? two : one).start('sleep', { args: [4], exclusiveKey: key })),
    );
    const accepted = settled.filter((s): s is PromiseFulfilledResult<Task> => s.status === 'fulfilled').map((s) => s.value);
    const refused = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected').map((s) => refusal(s.reason));
    expect(accepted).toHaveLength(1);
    expect(refused).toHaveLength(49);
    const winner = accepted[0]!;
    expect(winner.exclusiveKey).toBe(key);
    for (const r of refused) {
      expect(r.code).toBe(Code.AlreadyExists);
      expect(r.message).toMatch(/already running/);
      expect(r.message).toContain(winner.id);
      expect(r.reason).toBe('EXCLUSIVE_TASK_RUNNING');
      expect(r.runningId).toBe(winner.id);
    }
    // Nothing was written for the refused ones: the queue holds one task with the key.
    const listed = (await one.rpc.listTasks({ pageSize: 500 })).tasks.filter((t) => t.exclusiveKey === key);
    expect(listed.map((t) => t.id)).toEqual([winner.id]);

    // A different key is not blocked by the running one.
    const other = await two.start('hello', { args: ['other key'], exclusiveKey: 'another-key' });
    expect((await finalOf(one, other.id)).state).toBe(TaskState.SUCCESS);

    // Still refused while it runs, from either server.
    const running = await watchUntil(one, winner.id, (t) => t.state === TaskState.STARTED);
    await expectRefused(two.start('hello', { exclusiveKey: key }), running.id);

    const done = await finalOf(two, winner.id);
    expect(done.state).toBe(TaskState.SUCCESS);
    const next = await one.start('hello', { args: ['next'], exclusiveKey: key });
    expect(next.id).not.toBe(winner.id);
    expect((await finalOf(one, next.id)).state).toBe(TaskState.SUCCESS);
  });

  it('frees the key when its task ends in FAILURE', async () => {
    const key = 'freed-by-failure';
    // A countdown keeps it PENDING (and holding the key) long enough to be refused once.
    const first = await one.start('fail', { args: ['boom'], exclusiveKey: key, countdownMs: 1000 });
    await expectRefused(two.start('fail', { exclusiveKey: key }), first.id);
    const end = await finalOf(one, first.id);
    expect(end.state).toBe(TaskState.FAILURE);
    expect(end.error?.message).toBe('boom');
    const next = await two.start('hello', { exclusiveKey: key });
    expect((await finalOf(two, next.id)).state).toBe(TaskState.SUCCESS);
  });

  it('frees the key when its running task is cancelled (REVOKED)', async () => {
    const key = 'freed-by-cancel';
    const first = await one.start('sleep', { args: [30], exclusiveKey: key });
    await watchUntil(one, first.id, (t) => t.state === TaskState.STARTED);
    await expectRefused(two.start('sleep', { args: [30], exclusiveKey: key }), first.id);
    const res = await two.cancel({ exclusiveKey: key });
    expect(res.outcome).toBe(CancelOutcome.REQUESTED);
    expect(res.task?.id).toBe(first.id);
    expect((await finalOf(one, first.id)).state).toBe(TaskState.REVOKED);
    const next = await two.start('hello', { exclusiveKey: key });
    expect((await finalOf(one, next.id)).state).toBe(TaskState.SUCCESS);
  });

  it('frees the key when its waiting task is revoked before it ran', async () => {
    const key = 'freed-by-revoke';
    const first = await one.start('hello', { queue: 'nobody', exclusiveKey: key });
    await expectRefused(two.start('hello', { queue: 'nobody', exclusiveKey: key }), first.id);
    const res = await one.cancel(first.id);
    expect(res.outcome).toBe(CancelOutcome.REVOKED);
    const next = await two.start('hello', { queue: 'nobody', exclusiveKey: key });
    expect(next.state).toBe(TaskState.PENDING);
    // The same key on another queue is another key.
    const elsewhere = await one.start('hello', { exclusiveKey: key });
    expect((await finalOf(one, elsewhere.id)).state).toBe(TaskState.SUCCESS);
  });

  it("serves the refusal's detail type by reflection, so grpcurl can print the running id", async () => {
    const reflection = createClient(ServerReflection, createGrpcTransport({ baseUrl: stack.baseUrl }));
    async function* ask() {
      yield { messageRequest: { case: 'fileContainingSymbol' as const, value: 'google.rpc.ErrorInfo' } };
    }
    for await (const res of reflection.serverReflectionInfo(ask())) {
      expect(res.messageResponse.case).toBe('fileDescriptorResponse');
      if (res.messageResponse.case !== 'fileDescriptorResponse') return;
      const [file] = res.messageResponse.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b));
      expect(file?.name).toBe('google/rpc/error_details.proto');
      expect(file?.messageType.map((m) => m.name)).toContain('ErrorInfo');
      return;
    }
    throw new Error('reflection sent no answer');
  });
});
