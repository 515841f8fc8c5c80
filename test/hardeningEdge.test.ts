/**
 * Inputs at the edge of what the API takes, over real gRPC (the native path, and Connect's
 * handler where the protocol reaches it): deadlines too long for a timer, a resume point
 * beyond the task's history, ids and keys of many kilobytes, and bytes that are not a
 * protobuf message. Each answer is the status a client can act on, at once.
 */
import http2 from 'node:http2';
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GetStatusRequestSchema, WatchStatusRequestSchema, WatchStatusResponseSchema } from '../gen/taskwire/v1/task_service_pb.js';
import { rawGrpcCall, type RawCallOptions } from './helpers/rawGrpc.js';
import { startStack, type Stack } from './helpers/stack.js';

let stack: Stack;
let session: http2.ClientHttp2Session;

beforeAll(async () => {
  // No worker: tasks stay PENDING, so a watch stays open and sends heartbeats.
  stack = await startStack({ workers: 0, env: { TASKWIRE_WATCH_HEARTBEAT: '200ms' } });
  session = http2.connect(stack.baseUrl);
});
afterAll(async () => {
  session?.close();
  await stack?.stop();
});

const call = (method: string, body: Uint8Array, options?: RawCallOptions) => rawGrpcCall(session, method, body, options);

const encode = <D extends DescMessage>(schema: D, init: MessageInitShape<D>) => toBinary(schema, create(schema, init));
const BOTH = [
  ['the native gRPC path', false],
  ["Connect's gRPC handler", true],
] as const;

/** A Connect-protocol unary call in JSON over HTTP/1.1. */
async function connectJson(method: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${stack.baseUrl}/taskwire.v1.TaskService/${method}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as { code?: string; message?: string; task?: { id: string } } };
}

describe('a deadline longer than a timer can hold is no deadline', () => {
  for (const [path, gzip] of BOTH) {
    for (const timeout of ['2592000S', '720H', '2147484M']) {
      it(`GetStatus with grpc-timeout ${timeout} answers OK (${path})`, async () => {
        const task = await stack.client.start('hello', { args: ['deadline'] });
        const reply = await call('GetStatus', encode(GetStatusRequestSchema, { id: task.id }), {
          gzip,
          headers: { 'grpc-timeout': timeout },
        });
        expect(reply.message).toBe('');
        expect(reply.status).toBe('0');
      });
    }

    it(`WatchStatus with grpc-timeout 720H stays open past its first heartbeat (${path})`, async () => {
      const task = await stack.client.start('hello', { args: ['deadline'] });
      const reply = await call('WatchStatus', encode(WatchStatusRequestSchema, { id: task.id }), {
        gzip,
        headers: { 'grpc-timeout': '720H' },
        until: 2,
      });
      expect(reply.status).toBe('undefined');
      const [first, second] = reply.messages.map((m) => fromBinary(WatchStatusResponseSchema, m));
      expect(first!.event.case).toBe('task');
      expect(second!.event.case).toBe('heartbeat');
    });
  }

  it('Connect with connect-timeout-ms of 30 days answers OK', async () => {
    const task = await stack.client.start('hello', { args: ['deadline'] });
    const res = await connectJson('GetStatus', { id: task.id }, { 'connect-timeout-ms': String(30 * 24 * 3600 * 1000) });
    expect(res.body.message).toBeUndefined();
    expect(res.status).toBe(200);
    expect(res.body.task?.id).toBe(task.id);
  });

  it('a Connect-protocol WatchStatus with connect-timeout-ms of 30 days stays open past its first heartbeat', async () => {
    const task = await stack.client.start('hello', { args: ['deadline'] });
    const json = Buffer.from(JSON.stringify({ id: task.id }));
    const head = Buffer.alloc(5);
    head.writeUInt32BE(json.length, 1);
    const abort = new AbortController();
    const res = await fetch(`${stack.baseUrl}/taskwire.v1.TaskService/WatchStatus`, {
      method: 'POST',
      headers: { 'content-type': 'application/connect+json', 'connect-timeout-ms': String(30 * 24 * 3600 * 1000) },
      body: Buffer.concat([head, json]),
      signal: abort.signal,
    });
    const frames: { flags: number; body: any }[] = [];
    let data = Buffer.alloc(0);
    for await (const chunk of res.body!) {
      data = Buffer.concat([data, chunk]);
      while (data.length >= 5 && data.length >= 5 + data.readUInt32BE(1)) {
        const length = data.readUInt32BE(1);
        frames.push({ flags: data[0]!, body: JSON.parse(data.subarray(5, 5 + length).toString()) });
        data = data.subarray(5 + length);
      }
      if (frames.length >= 2) break;
    }
    abort.abort();
    expect(frames.map((f) => f.flags)).toEqual([0, 0]);
    expect(frames[0]!.body.task.id).toBe(task.id);
    expect(frames[1]!.body.heartbeat).toBeDefined();
  });

  it('a short deadline still ends the call (native gRPC path)', async () => {
    const task = await stack.client.start('hello', { args: ['deadline'] });
    const reply = await call('WatchStatus', encode(WatchStatusRequestSchema, { id: task.id }), { headers: { 'grpc-timeout': '300m' } });
    expect(reply.status).toBe('4');
  });
});

describe("WatchStatus from beyond a task's final version", () => {
  for (const [path, gzip] of BOTH) {
    it(`answers OUT_OF_RANGE at once, naming the final version (${path})`, async () => {
      const task = await stack.client.start('hello', { args: ['future'] });
      // Cancelled before it ran: REVOKED, its final version.
      const { task: revoked } = await stack.client.cancel(task.id);
      const reply = await call('WatchStatus', encode(WatchStatusRequestSchema, { id: task.id, afterVersion: 99n }), { gzip });
      expect(reply.status).toBe('11');
      expect(reply.message).toContain(`final version ${revoked!.version}`);
      expect(reply.messages).toHaveLength(0);
    });

    it(`refuses an after_version beyond any version with INVALID_ARGUMENT (${path})`, async () => {
      const task = await stack.client.start('hello', { args: ['future'] });
      const reply = await call('WatchStatus', encode(WatchStatusRequestSchema, { id: task.id, afterVersion: 2n ** 64n - 1n }), { gzip });
      expect(reply.status).toBe('3');
      expect(reply.message).toContain('after_version');
    });
  }

  it('a watch waiting for a version the task has not reached ends OUT_OF_RANGE when the task finishes below it', async () => {
    const task = await stack.client.start('hello', { args: ['future'] });
    let attached!: () => void;
    const heartbeat = new Promise<void>((resolve) => (attached = resolve));
    const watch = call('WatchStatus', encode(WatchStatusRequestSchema, { id: task.id, afterVersion: 99n }), { onFirst: attached });
    // Its first heartbeat: the watch has read the record and waits for what comes next.
    await heartbeat;
    const { task: revoked } = await stack.client.cancel(task.id);
    const reply = await watch;
    expect(reply.messages.map((m) => fromBinary(WatchStatusResponseSchema, m).event.case)).toContain('heartbeat');
    expect(reply.status).toBe('11');
    expect(reply.message).toContain(`final version ${revoked!.version}`);
  });

  it('resuming at the current version still waits for the next one', async () => {
    const task = await stack.client.start('hello', { args: ['future'] });
    const reply = await call('WatchStatus', encode(WatchStatusRequestSchema, { id: task.id, afterVersion: BigInt(task.version) }), { until: 1 });
    expect(fromBinary(WatchStatusResponseSchema, reply.messages[0]!).event.case).toBe('heartbeat');
  });
});

describe('long ids and keys are not echoed whole', () => {
  const long = 'x'.repeat(8000);
  const cases: [string, Uint8Array][] = [
    ['an id', encode(GetStatusRequestSchema, { id: long })],
    ['an id on a queue', encode(GetStatusRequestSchema, { id: `${long}/0190a8c4-1111-7aaa-8bbb-123456789abc` })],
    ['an exclusive key', encode(GetStatusRequestSchema, { exclusiveKey: long })],
    ['a queue', encode(GetStatusRequestSchema, { queue: long })],
  ];
  for (const [path, gzip] of BOTH) {
    for (const [what, body] of cases) {
      it(`${what} of 8,000 characters: the real code, a short message (${path})`, async () => {
        const reply = await call('GetStatus', body, { gzip });
        expect(['3', '5']).toContain(reply.status);
        expect(reply.message.length).toBeLessThan(400);
        expect(reply.headerBytes).toBeLessThan(2000);
      });
    }
  }
});

describe('bytes that are not the request message', () => {
  // field 1 (id, a string) holding the bytes ff fe: not UTF-8
  const badUtf8 = Uint8Array.from([0x0a, 0x02, 0xff, 0xfe]);
  // field 1 sent as a varint, where a string is length-delimited
  const wrongWireType = Uint8Array.from([0x08, 0x01]);
  // an unknown field 15 that nests 120 groups deep
  const deep = Uint8Array.from([...Array(120).fill(0x7b), ...Array(120).fill(0x7c)]);
  for (const [path, gzip] of BOTH) {
    for (const [what, body] of [
      ['a string that is not UTF-8', badUtf8],
      ['a field of the wrong wire type', wrongWireType],
      ['groups nested 120 deep', deep],
    ] as const) {
      it(`${what} is INVALID_ARGUMENT (${path})`, async () => {
        const reply = await call('GetStatus', body, { gzip });
        expect(reply.status).toBe('3');
        expect(reply.message).toMatch(/^parse binary: ./);
      });
    }
  }
});
