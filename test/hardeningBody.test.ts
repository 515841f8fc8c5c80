/**
 * A gRPC request body is not read further than the call needs: a call without a valid token
 * is refused from its headers, a unary body that starts a second message is refused at that
 * message's prefix, and the bytes buffered for unread bodies are capped per connection.
 * Sent as raw HTTP/2 frames, so that a body can be as large, or as unfinished, as an
 * attacker makes it.
 */
import http from 'node:http';
import http2 from 'node:http2';
import { create, toBinary } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GetStatusRequestSchema } from '../gen/taskwire/v1/task_service_pb.js';
import { loadConfig } from '../src/config.js';
import { startStack, type Stack } from './helpers/stack.js';

const TOKEN = 'tok-body-0123456789abcdef';
const NO_SUCH_TASK = '0190a8c4-1111-7aaa-8bbb-123456789abc';

let stack: Stack;
let session: http2.ClientHttp2Session;

beforeAll(async () => {
  stack = await startStack({
    workers: 0,
    env: {
      TASKWIRE_TOKENS: TOKEN,
      TASKWIRE_MAX_PAYLOAD: '1000',
      TASKWIRE_MAX_REQUEST: '65536',
      TASKWIRE_MAX_CONNECTION_BUFFER_BYTES: '131072',
    },
  });
  session = http2.connect(stack.baseUrl);
});
afterAll(async () => {
  session?.close();
  await stack?.stop();
});

interface Status {
  status?: string;
  message: string;
}

/** Opens a gRPC call; its status resolves from a trailers-only reply or from the trailers. */
function open(
  path: string,
  token?: string,
  s = session,
  contentType = 'application/grpc',
): { req: http2.ClientHttp2Stream; status: Promise<Status> } {
  const req = s.request({
    ':method': 'POST',
    ':path': path,
    'content-type': contentType,
    te: 'trailers',
    ...(token && { authorization: `Bearer ${token}` }),
  });
  const status = new Promise<Status>((resolve) => {
    const seen = (h: http2.IncomingHttpHeaders) => {
      if (h['grpc-status'] !== undefined) resolve({ status: String(h['grpc-status']), message: decodeURIComponent(String(h['grpc-message'] ?? '')) });
    };
    req.on('response', seen);
    req.on('trailers', seen);
    req.on('error', () => {});
    req.on('close', () => resolve({ status: undefined, message: `closed without a status (code ${req.rstCode})` }));
    req.resume();
  });
  return { req, status };
}

const framed = (bytes: Uint8Array) => {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(bytes.length, 1);
  return Buffer.concat([head, bytes]);
};
const getStatus = framed(toBinary(GetStatusRequestSchema, create(GetStatusRequestSchema, { id: NO_SUCH_TASK })));

/** Writes chunks one after another until the call is answered; how many were written by then. */
async function writeUntilAnswered(req: http2.ClientHttp2Stream, status: Promise<Status>, chunks: number, chunk: Buffer): Promise<number> {
  let answered = false;
  void status.then(() => (answered = true));
  let written = 0;
  while (written < chunks && !answered && !req.destroyed) {
    await Promise.race([new Promise((r) => req.write(chunk, r)), status]);
    if (!answered) written++;
  }
  if (!answered && !req.destroyed) req.end();
  return written;
}

describe('a request body is not read further than the call needs', () => {
  it('a call without a valid token gets UNAUTHENTICATED from its headers, before its body is read', async () => {
    // Many messages of the largest size allowed, in one body, as one unary call.
    const message = framed(Buffer.alloc(60_000, 7));
    const messages = 400;
    for (const path of ['/taskwire.v1.TaskService/GetStatus', '/taskwire.v1.TaskService/NoSuchMethod']) {
      for (const token of [undefined, 'tok-wrong-0123456789abcdef']) {
        const { req, status } = open(path, token);
        const written = await writeUntilAnswered(req, status, messages, message);
        const s = await status;
        expect(s.status, `${path} ${s.message}`).toBe('16');
        expect(s.message).toContain('bearer token');
        // The reply came while the client still had most of its body to send.
        expect(written).toBeLessThan(messages);
      }
    }
  });

  it('over gRPC-Web and the Connect protocol too, a call without a valid token is refused from its headers', async () => {
    const message = framed(Buffer.alloc(60_000, 7));
    const web = open('/taskwire.v1.TaskService/GetStatus', undefined, session, 'application/grpc-web+proto');
    const written = await writeUntilAnswered(web.req, web.status, 400, message);
    const s = await web.status;
    expect(s.status, s.message).toBe('16');
    expect(written).toBeLessThan(400);

    // Connect's unary protocol: HTTP 401 and its JSON error, before the body is read.
    const req = session.request({ ':method': 'POST', ':path': '/taskwire.v1.TaskService/GetStatus', 'content-type': 'application/proto' });
    req.on('error', () => {});
    const answer = new Promise<{ status: number; body: string }>((resolve) => {
      let status = 0;
      const chunks: Buffer[] = [];
      req.on('response', (h) => (status = Number(h[':status'])));
      req.on('data', (d: Buffer) => chunks.push(d));
      req.on('end', () => resolve({ status, body: Buffer.concat(chunks).toString() }));
    });
    const sent = await writeUntilAnswered(req, answer as unknown as Promise<Status>, 400, Buffer.alloc(60_000, 7));
    const a = await answer;
    expect(a.status).toBe(401);
    expect(JSON.parse(a.body)).toMatchObject({ code: 'unauthenticated' });
    expect(sent).toBeLessThan(400);
  });

  it('over HTTP/1.1 too: HTTP 401 before the body ends, and the connection is closed', async () => {
    const req = http.request(`${stack.baseUrl}/taskwire.v1.TaskService/GetStatus`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
    });
    req.on('error', () => {});
    const answer = new Promise<{ status: number; connection?: string; body: string }>((resolve) => {
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, body: Buffer.concat(chunks).toString() }));
      });
    });
    // The body is begun and never ended: the answer does not wait for its end.
    req.write('{"id": "');
    const a = await answer;
    req.destroy();
    expect(a.status).toBe(401);
    expect(a.connection).toBe('close');
    expect(JSON.parse(a.body)).toMatchObject({ code: 'unauthenticated' });
  });

  it('auth first, then UNIMPLEMENTED for a method the server does not have', async () => {
    const { req, status } = open('/taskwire.v1.TaskService/NoSuchMethod', TOKEN);
    req.write(getStatus);
    const s = await status;
    expect(s.status, s.message).toBe('12');
    req.close();
  });

  it('a unary body with a second message is refused INVALID_ARGUMENT as soon as its prefix arrives', async () => {
    // Both messages complete, in one body.
    const both = open('/taskwire.v1.TaskService/GetStatus', TOKEN);
    both.req.end(Buffer.concat([getStatus, getStatus]));
    const a = await both.status;
    expect(a.status, a.message).toBe('3');
    expect(a.message).toContain('extra input message');

    // Only the second message's prefix, and the body left open: the answer does not wait for it.
    const prefix = open('/taskwire.v1.TaskService/GetStatus', TOKEN);
    prefix.req.write(Buffer.concat([getStatus, getStatus.subarray(0, 5)]));
    const b = await prefix.status;
    expect(b.status, b.message).toBe('3');
    expect(b.message).toContain('extra input message');
  });

  it('bodies buffered on one connection are capped: RESOURCE_EXHAUSTED naming the setting', async () => {
    const own = http2.connect(stack.baseUrl);
    try {
      // Each call announces a message of 60,000 bytes and sends 50,000 of them, then waits.
      const head = Buffer.alloc(5);
      head.writeUInt32BE(60_000, 1);
      const part = Buffer.concat([head, Buffer.alloc(50_000, 1)]);
      const calls = [];
      let refused: Status | undefined;
      for (let i = 0; i < 4 && !refused; i++) {
        const call = open('/taskwire.v1.TaskService/GetStatus', TOKEN, own);
        calls.push(call);
        await new Promise((r) => call.req.write(part, r));
        // A third call's bytes pass 131,072: it is the one refused.
        if (i === 2) refused = await call.status;
      }
      expect(refused?.status, refused?.message).toBe('8');
      expect(refused?.message).toContain('TASKWIRE_MAX_CONNECTION_BUFFER_BYTES');

      // The calls under the cap are still served once their bodies end.
      const first = calls[0]!;
      first.req.end(Buffer.alloc(10_000, 1));
      const s = await first.status;
      expect(s.status, s.message).toBe('3');
    } finally {
      own.close();
    }
  });
});

describe('TASKWIRE_MAX_CONNECTION_BUFFER_BYTES', () => {
  it('is checked at start: a whole number, not below the largest request', () => {
    expect(loadConfig({}, {}).maxConnectionBufferBytes).toBeGreaterThanOrEqual(loadConfig({}, {}).maxRequestBytes);
    expect(() => loadConfig({}, { TASKWIRE_MAX_CONNECTION_BUFFER_BYTES: 'lots' })).toThrow(
      /TASKWIRE_MAX_CONNECTION_BUFFER_BYTES must be a whole number/,
    );
    expect(() =>
      loadConfig({}, { TASKWIRE_MAX_REQUEST: '65536', TASKWIRE_MAX_PAYLOAD: '1000', TASKWIRE_MAX_CONNECTION_BUFFER_BYTES: '4096' }),
    ).toThrow(/TASKWIRE_MAX_CONNECTION_BUFFER_BYTES \(4096\) must not be below --max-request \/ TASKWIRE_MAX_REQUEST \(65536\)/);
    expect(loadConfig({ 'max-connection-buffer': '2000000' }, {}).maxConnectionBufferBytes).toBe(2000000);
  });
});
