/**
 * The Connect protocol as curl speaks it: JSON over plain HTTP/1.1 POSTs made with node:http,
 * no Connect client. Unary calls are a JSON body in and out; the server stream (WatchStatus)
 * is application/connect+json with enveloped messages, parsed here by hand.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from './helpers/stack.js';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.stop();
});

interface Reply {
  status: number;
  httpVersion: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

function post(path: string, body: Buffer | string, contentType = 'application/json', port = stack.api.port): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path, method: 'POST', headers: { 'content-type': contentType, 'content-length': Buffer.byteLength(body) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, httpVersion: res.httpVersion, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const rpc = (method: string) => `/taskwire.v1.TaskService/${method}`;

async function call(method: string, message: unknown, port?: number): Promise<{ status: number; json: any; reply: Reply }> {
  const reply = await post(rpc(method), JSON.stringify(message), 'application/json', port);
  return { status: reply.status, json: JSON.parse(reply.body.toString('utf8')), reply };
}

/** A Connect envelope: flags (1 byte), length (4 bytes, big-endian), payload. */
function envelope(flags: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(flags, 0);
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

interface Frame {
  endStream: boolean;
  json: any;
}

function parseEnvelopes(body: Buffer): Frame[] {
  const frames: Frame[] = [];
  let at = 0;
  while (at < body.length) {
    expect(body.length - at).toBeGreaterThanOrEqual(5);
    const flags = body.readUInt8(at);
    const length = body.readUInt32BE(at + 1);
    const payload = body.subarray(at + 5, at + 5 + length);
    expect(payload.length).toBe(length);
    expect(flags & 0x01).toBe(0); // not compressed: none was asked for
    frames.push({ endStream: (flags & 0x02) !== 0, json: JSON.parse(payload.toString('utf8')) });
    at += 5 + length;
  }
  return frames;
}

async function watchStatus(request: object): Promise<{ reply: Reply; frames: Frame[] }> {
  const reply = await post(rpc('WatchStatus'), envelope(0, Buffer.from(JSON.stringify(request))), 'application/connect+json');
  return { reply, frames: parseEnvelopes(reply.body) };
}

describe('Connect JSON over HTTP/1.1', () => {
  it('Start with JSON, then GetStatus with JSON', async () => {
    const start = await call('Start', { name: 'hello', args: ['Lucy'] });
    expect(start.reply.httpVersion).toBe('1.1');
    expect(start.status).toBe(200);
    expect(start.reply.headers['content-type']).toBe('application/json');
    const task = start.json.task;
    expect(task).toMatchObject({ name: 'hello', queue: 'default', state: 'TASK_STATE_PENDING', args: ['Lucy'], kwargs: {}, version: '1' });
    expect(task.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(Date.parse(task.createdAt)).not.toBeNaN();

    // Wait for the end through the stream, then read the record.
    const { frames } = await watchStatus({ id: task.id });
    expect(frames.at(-2)!.json.task.state).toBe('TASK_STATE_SUCCESS');

    const status = await call('GetStatus', { id: task.id });
    expect(status.status).toBe(200);
    expect(status.json.task).toMatchObject({
      id: task.id,
      state: 'TASK_STATE_SUCCESS',
      result: 'Hello Lucy!',
      attempt: 1,
      version: '3',
    });
    expect(status.json.task.worker).toBeTruthy();
    expect(Date.parse(status.json.task.finishedAt)).toBeGreaterThanOrEqual(Date.parse(status.json.task.startedAt));

    // {} is the latest task started (README's curl session).
    const latest = await call('GetStatus', {});
    expect(latest.json.task.id).toBe(task.id);
  });

  it('kwargs and JSON values of every kind go in and come back as JSON', async () => {
    const args = [{ nested: [1, 2.5, true, null, 'x'] }];
    const start = await call('Start', { name: 'hello', args, kwargs: { name: 'Kim', seconds: 0 } });
    expect(start.status).toBe(200);
    expect(start.json.task.args).toEqual(args);
    expect(start.json.task.kwargs).toEqual({ name: 'Kim', seconds: 0 });
  });

  it('errors are JSON {"code", "message", "details"} with the matching HTTP status', async () => {
    const unknown = await call('Start', { name: 'nope' });
    expect(unknown.status).toBe(400);
    expect(unknown.reply.headers['content-type']).toBe('application/json');
    expect(unknown.json.code).toBe('invalid_argument');
    expect(unknown.json.message).toBe(
      'name: no task is registered as "nope"; known tasks: add, fail, hello, progress, sleep, spin, tsum, unserializable',
    );
    const types = unknown.json.details.map((d: { type: string }) => d.type);
    expect(types).toEqual(['google.rpc.ErrorInfo', 'google.rpc.BadRequest']);
    expect(unknown.json.details[1].debug.fieldViolations[0].field).toBe('name');
    // Never a stack trace on the wire.
    expect(JSON.stringify(unknown.json)).not.toMatch(/\bat .*\.ts:\d+/);

    const notAList = await call('Start', { name: 'hello', args: { name: 'Lucy' } });
    expect(notAList.status).toBe(400);
    expect(notAList.json.code).toBe('invalid_argument');
    expect(notAList.json.message).toMatch(/ListValue/);

    const notAnObject = await call('Start', { name: 'hello', kwargs: ['Lucy'] });
    expect(notAnObject.json.code).toBe('invalid_argument');

    const notJson = await post(rpc('Start'), '{"name": "hello",');
    expect(notJson.status).toBe(400);
    expect(JSON.parse(notJson.body.toString()).code).toBe('invalid_argument');

    const malformed = await call('GetStatus', { id: 'abc' });
    expect(malformed.status).toBe(400);
    expect(malformed.json).toMatchObject({ code: 'invalid_argument', message: 'id: "abc" is not a task id' });

    const missing = await call('GetStatus', { id: '01890000-0000-7000-8000-000000000000' });
    expect(missing.status).toBe(404);
    expect(missing.json.code).toBe('not_found');
    expect(missing.json.details[0].debug).toMatchObject({ reason: 'TASK_NOT_FOUND', metadata: { task_id: '01890000-0000-7000-8000-000000000000' } });
  });

  it('a payload over the limit is RESOURCE_EXHAUSTED', async () => {
    const small = await stack.startApi({ env: { TASKWIRE_MAX_PAYLOAD: '64' } });
    try {
      const big = await call('Start', { name: 'hello', args: ['x'.repeat(100)] }, small.port);
      expect(big.status).toBe(429);
      expect(big.json.code).toBe('resource_exhausted');
      expect(big.json.message).toMatch(/the limit is 64/);
      const ok = await call('Start', { name: 'hello', args: ['x'] }, small.port);
      expect(ok.status).toBe(200);
    } finally {
      await small.stop();
    }
  });

  it('WatchStatus streams enveloped JSON messages, then an end-of-stream message', async () => {
    const start = await call('Start', { name: 'progress', args: [3], kwargs: { interval: 10 } });
    const { reply, frames } = await watchStatus({ id: start.json.task.id, afterVersion: '0' });
    expect(reply.httpVersion).toBe('1.1');
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe('application/connect+json');

    const end = frames.at(-1)!;
    expect(end.endStream).toBe(true);
    expect(end.json.error).toBeUndefined();
    const messages = frames.slice(0, -1);
    expect(messages.every((f) => !f.endStream && 'task' in f.json)).toBe(true);
    const tasks = messages.map((f) => f.json.task);
    expect(tasks.map((t) => t.version)).toEqual(['1', '2', '3', '4', '5', '6']);
    expect(tasks.map((t) => t.state)).toEqual([
      'TASK_STATE_PENDING',
      'TASK_STATE_STARTED',
      'TASK_STATE_STARTED',
      'TASK_STATE_STARTED',
      'TASK_STATE_STARTED',
      'TASK_STATE_SUCCESS',
    ]);
    expect(tasks.slice(2, 5).map((t) => t.progress)).toEqual([1, 2, 3].map((step) => ({ step, of: 3 })));
    expect(tasks.at(-1).result).toEqual({ steps: 3 });
  });

  it('a WatchStatus error arrives in the end-of-stream message', async () => {
    const { reply, frames } = await watchStatus({ id: '01890000-0000-7000-8000-000000000000' });
    expect(reply.status).toBe(200);
    expect(frames).toHaveLength(1);
    expect(frames[0]!.endStream).toBe(true);
    expect(frames[0]!.json.error).toMatchObject({ code: 'not_found' });
    expect(frames[0]!.json.error.message).toContain('01890000-0000-7000-8000-000000000000');
  });
});
