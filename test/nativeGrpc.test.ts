/**
 * gRPC calls are served natively (src/server/grpc/), plain or gzipped; other protocols by
 * Connect's handler. A gRPC client must not be able to tell whether it compressed: each call
 * is sent twice over raw HTTP/2, once plain and once gzipped, and what comes back is
 * compared — status, message, error details, response headers and the reply's bytes. The
 * native path must also answer what Connect's handler would (the connect-node and
 * gRPC-Web clients below).
 */
import http2 from 'node:http2';
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape } from '@bufbuild/protobuf';
import { createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  GetStatusRequestSchema,
  TaskService,
  StartRequestSchema,
  StartResponseSchema,
  WatchStatusRequestSchema,
} from '../gen/taskwire/v1/task_service_pb.js';
import { createTaskwireClient, TaskwireClient } from '../src/client/index.js';
import { serverStreamsOpen } from './helpers/metrics.js';
import { frame, rawGrpcCall, type RawCallOptions, type RawReply } from './helpers/rawGrpc.js';
import { startStack, type Stack } from './helpers/stack.js';

let stack: Stack;
let session: http2.ClientHttp2Session;

beforeAll(async () => {
  // No worker: tasks stay PENDING, so their watches stay open until the deadline.
  stack = await startStack({ workers: 0, env: { TASKWIRE_MAX_REQUEST: '4096', TASKWIRE_MAX_PAYLOAD: '1000' } });
  session = http2.connect(stack.baseUrl);
});
afterAll(async () => {
  session?.close();
  await stack?.stop();
});

const call = (method: string, body: Uint8Array[], options?: RawCallOptions) => rawGrpcCall(session, method, body, options);

const encode = <D extends DescMessage>(schema: D, init: MessageInitShape<D>) => Buffer.from(toBinary(schema, create(schema, init)));
const start = (init: Parameters<typeof TaskwireClient.startRequest>[1] & { name?: string }) =>
  encode(StartRequestSchema, TaskwireClient.startRequest(init.name ?? 'hello', init));

/** The same call both ways; both replies, after checking that a gRPC client sees no difference. */
async function bothWays(method: string, body: Buffer[], headers?: http2.OutgoingHttpHeaders): Promise<RawReply> {
  const native = await call(method, body, { headers });
  const connect = await call(method, body, { headers, gzip: true });
  expect(native.status).toBe(connect.status);
  expect(native.message).toBe(connect.message);
  expect(native.details).toEqual(connect.details);
  expect(native.headers).toEqual(connect.headers);
  return native;
}

describe('gzipped or plain, a gRPC call gets the same answer', () => {
  it('a reply: the same bytes, headers and OK status', async () => {
    const task = await stack.client.start('hello', { args: ['Lucy'] });
    const native = await bothWays('GetStatus', [encode(GetStatusRequestSchema, { id: task.id })]);
    expect(native.status).toBe('0');
    const connect = await call('GetStatus', [encode(GetStatusRequestSchema, { id: task.id })], { gzip: true });
    expect(native.messages).toEqual(connect.messages);
    expect(native.messages).toHaveLength(1);
  });

  it('errors: the same code, message and google.rpc details', async () => {
    const notFound = await bothWays('GetStatus', [encode(GetStatusRequestSchema, { id: '0190a8c4-1111-7aaa-8bbb-123456789abc' })]);
    expect(notFound.status).toBe('5');

    const invalid = await bothWays('Start', [start({ name: 'no-such-task' })]);
    expect(invalid.status).toBe('3');
    expect(invalid.details).toBeDefined();

    await stack.client.start('hello', { exclusiveKey: 'parity', countdownMs: 3_600_000 });
    const exists = await bothWays('Start', [start({ exclusiveKey: 'parity' })]);
    expect(exists.status).toBe('6');
    expect(Buffer.from(exists.details!, 'base64').toString('latin1')).toContain('running_task_id');
  });

  it('protocol errors: no message, two messages, bytes that are not the message, a message over the limit', async () => {
    expect((await bothWays('GetStatus', [])).status).toBe('12');
    const one = encode(GetStatusRequestSchema, { id: 'x' });
    expect((await bothWays('GetStatus', [one, one])).status).toBe('3');
    expect((await bothWays('GetStatus', [Buffer.from([0xff, 0xff, 0xff])])).status).toBe('3');
    // Over the limit (Connect's message for a gzipped request speaks of its decompressed size).
    const big = await call('Start', [start({ args: ['x'.repeat(10_000)] })]);
    expect(big).toMatchObject({ status: '8', message: 'message size 10016 is larger than configured readMaxBytes 4096' });
  });

  it('a deadline (grpc-timeout) ends a watch with DEADLINE_EXCEEDED after its first record', async () => {
    const task = await stack.client.start('hello', { countdownMs: 3_600_000 });
    const body = [encode(WatchStatusRequestSchema, { id: task.id })];
    const native = await bothWays('WatchStatus', body, { 'grpc-timeout': '300m' });
    expect(native.status).toBe('4');
    expect(native.messages.length).toBeGreaterThanOrEqual(1);
    expect(await call('WatchStatus', body, { headers: { 'grpc-timeout': 'soon' } })).toMatchObject({ status: '3' });
  });

  it('a client that resets a watch with an error code ends that call, and the server serves on', async () => {
    const task = await stack.client.start('hello', { countdownMs: 3_600_000 });
    const req = session.request({
      ':method': 'POST',
      ':path': '/taskwire.v1.TaskService/WatchStatus',
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    req.on('error', () => {});
    const closed = new Promise((resolve) => req.on('close', resolve));
    req.once('data', () => req.close(http2.constants.NGHTTP2_INTERNAL_ERROR));
    req.end(frame(encode(WatchStatusRequestSchema, { id: task.id }), 0));
    await closed;
    // A fresh connection: the server process is still there and answers.
    expect((await createTaskwireClient({ baseUrl: stack.baseUrl }).status(task.id)).id).toBe(task.id);
  });

  it('a watch its client closes ends quietly, whatever the protocol', async () => {
    const task = await stack.client.start('hello', { countdownMs: 3_600_000 });
    const baseUrl = stack.baseUrl;
    for (const transport of [
      createGrpcTransport({ baseUrl }),
      createConnectTransport({ baseUrl, httpVersion: '1.1' }),
      createGrpcWebTransport({ baseUrl, httpVersion: '1.1' }),
    ]) {
      const ctl = new AbortController();
      const watch = createClient(TaskService, transport).watchStatus({ id: task.id }, { signal: ctl.signal })[Symbol.asyncIterator]();
      expect((await watch.next()).value?.event.case).toBe('task');
      ctl.abort();
      await watch.next().catch(() => undefined);
    }
    expect(await serverStreamsOpen(baseUrl, 0)).toBe(0);
    expect(stack.api.output()).not.toContain('unexpected error');
  });

  it('a gzipped call gets its large messages gzipped back; a plain one gets them plain', async () => {
    const task = await stack.client.start('hello', { args: ['x'.repeat(480)], kwargs: { pad: 'y'.repeat(480) } });
    const body = [encode(GetStatusRequestSchema, { id: task.id })];
    const gzipped = await call('GetStatus', body, { gzip: true });
    expect(gzipped).toMatchObject({ status: '0', encoding: 'gzip', flags: [1] });
    expect(gzipped.headers['grpc-accept-encoding']).toBe('gzip');
    const plain = await call('GetStatus', body);
    expect(plain).toMatchObject({ status: '0', encoding: undefined, flags: [0] });
    expect(plain.messages).toEqual(gzipped.messages);
  });

  it('refuses an encoding it does not speak, naming the one it does', async () => {
    const reply = await call('GetStatus', [encode(GetStatusRequestSchema, { id: 'x' })], { headers: { 'grpc-encoding': 'br' } });
    expect(reply.status).toBe('12');
    expect(reply.message).toBe('unknown compression "br": supported encodings are gzip');
    expect(reply.headers['grpc-accept-encoding']).toBe('gzip');
  });

  it('the reply of a Start is a StartResponse with the task', async () => {
    const reply = await call('Start', [start({ args: ['Ada'] })]);
    expect(reply.status).toBe('0');
    const task = fromBinary(StartResponseSchema, reply.messages[0]!).task!;
    expect((await stack.client.status(task.id)).id).toBe(task.id);
  });
});
