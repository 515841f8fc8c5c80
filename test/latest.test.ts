/**
 * The latest-task shortcuts (issue 3, the seed's `/status` without an id): GetStatus,
 * WatchStatus and Cancel without an id act on the latest task started on the queue, or
 * with an exclusive key on the latest started with that key; before any task was started
 * they answer NOT_FOUND with a message saying so.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorInfoSchema } from '../gen/google/rpc/error_details_pb.js';
import {
  CancelOutcome,
  Code,
  ConnectError,
  resultOf,
  TaskState,
  TERMINAL,
  type Task,
  type TaskRef,
  type TaskwireClient,
} from '../src/client/index.js';
import { startStack, type Stack } from './helpers/stack.js';

let stack: Stack;
let tw: TaskwireClient;

beforeAll(async () => {
  // A fresh Redis: no task has ever been started.
  stack = await startStack({ env: { TASKWIRE_LEASE: '2s' } });
  tw = stack.client;
});
afterAll(async () => {
  await stack?.stop();
});

async function collect(ref: TaskRef): Promise<Task[]> {
  const seen: Task[] = [];
  for await (const t of tw.watch(ref)) seen.push(t);
  return seen;
}

async function failure(p: Promise<unknown>): Promise<ConnectError> {
  return p.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (err: unknown) => ConnectError.from(err),
  );
}

/** The three calls without an id, each answered NOT_FOUND with `message`. */
async function expectAllNotFound(ref: TaskRef, message: RegExp): Promise<void> {
  const errors = await Promise.all([failure(tw.status(ref)), failure(collect(ref)), failure(tw.cancel(ref))]);
  for (const err of errors) {
    expect(err.code).toBe(Code.NotFound);
    expect(err.rawMessage).toMatch(message);
    expect(err.findDetails(ErrorInfoSchema)[0]?.reason).toBe('TASK_NOT_FOUND');
  }
}

describe('the latest task', () => {
  it('is NOT_FOUND, saying no task was started, before any task was', async () => {
    await expectAllNotFound({}, /^no task has been started on queue "default" yet/);
    await expectAllNotFound({ exclusiveKey: 'report' }, /^no task has been started with exclusive key "report" on queue "default"/);
    await expectAllNotFound({ queue: 'emails' }, /^no task has been started on queue "emails" yet/);
  });

  it('is what GetStatus, WatchStatus and Cancel without an id act on', async () => {
    const first = await tw.start('hello', { args: ['first'] });
    expect((await tw.status()).id).toBe(first.id);
    // Watch without an id follows the latest task to its end.
    const seen = await collect({});
    expect(seen.every((t) => t.id === first.id)).toBe(true);
    expect(seen.at(-1)?.state).toBe(TaskState.SUCCESS);
    expect(resultOf(seen.at(-1)!)).toBe('Hello first!');

    const second = await tw.start('sleep', { args: [30] });
    const status = await tw.status();
    expect(status.id).toBe(second.id);
    expect(status.name).toBe('sleep');
    const res = await tw.cancel(undefined, { reason: 'cancelled without an id' });
    expect(res.task?.id).toBe(second.id);
    expect([CancelOutcome.REVOKED, CancelOutcome.REQUESTED]).toContain(res.outcome);
    const end = (await collect({})).at(-1)!;
    expect(end.id).toBe(second.id);
    expect(end.state).toBe(TaskState.REVOKED);
    expect(end.error?.message).toBe('cancelled without an id');
    // The first one was left alone.
    expect((await tw.status(first.id)).state).toBe(TaskState.SUCCESS);
  });

  it('with an exclusive key is the latest task started with that key, and the queue latest is another', async () => {
    const keyed = await tw.start('sleep', { args: [30], exclusiveKey: 'report' });
    const otherKey = await tw.start('hello', { args: ['other key'], exclusiveKey: 'invoice' });
    const plain = await tw.start('hello', { args: ['plain'] });

    expect((await tw.status()).id).toBe(plain.id);
    expect((await tw.status({ exclusiveKey: 'report' })).id).toBe(keyed.id);
    expect((await tw.status({ exclusiveKey: 'invoice' })).id).toBe(otherKey.id);
    const watch = tw.watch({ exclusiveKey: 'report' });
    const first = await watch.next();
    await watch.return(undefined);
    expect(first.value?.id).toBe(keyed.id);

    const res = await tw.cancel({ exclusiveKey: 'report' });
    expect(res.task?.id).toBe(keyed.id);
    const end = (await collect({ exclusiveKey: 'report' })).at(-1)!;
    expect(end.id).toBe(keyed.id);
    expect(end.state).toBe(TaskState.REVOKED);
    // The plain latest was not the one cancelled.
    const plainEnd = (await collect({})).at(-1)!;
    expect(plainEnd.id).toBe(plain.id);
    expect(plainEnd.state).toBe(TaskState.SUCCESS);

    // The next task with the key becomes its latest.
    const again = await tw.start('hello', { args: ['again'], exclusiveKey: 'report' });
    expect((await tw.status({ exclusiveKey: 'report' })).id).toBe(again.id);
    expect((await collect({ exclusiveKey: 'report' })).at(-1)?.state).toBe(TaskState.SUCCESS);
  });

  it('is kept per queue', async () => {
    const here = await tw.start('hello', { args: ['default queue'] });
    const there = await tw.start('hello', { args: ['emails queue'], queue: 'emails' });
    expect((await tw.status()).id).toBe(here.id);
    const status = await tw.status({ queue: 'emails' });
    expect(status.id).toBe(there.id);
    expect(status.state).toBe(TaskState.PENDING); // no worker reads "emails"
    expect((await tw.cancel({ queue: 'emails' })).outcome).toBe(CancelOutcome.REVOKED);
    const end = (await collect({ queue: 'emails' })).at(-1)!;
    expect(end.id).toBe(there.id);
    expect(TERMINAL.has(end.state)).toBe(true);
    expect(end.state).toBe(TaskState.REVOKED);
  });
});
