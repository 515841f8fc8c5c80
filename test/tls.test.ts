/**
 * TLS with a given certificate and key: gRPC over h2 and the Connect protocol over
 * HTTP/1.1 on the same port, verified against the certificate this test makes itself.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code, ConnectError, createTaskwireClient } from '../src/client/index.js';
import { loadConfig } from '../src/config.js';
import { hello } from '../src/tasks/examples.js';
import { startStack, type Stack } from './helpers/stack.js';

let stack: Stack;
let dir: string;
let cert: Buffer;
let baseUrl: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'taskwire-tls-'));
  // A self-signed certificate for localhost and 127.0.0.1, valid for a day.
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  cert = readFileSync(join(dir, 'cert.pem'));
  stack = await startStack({
    env: { TASKWIRE_TLS_CERT: join(dir, 'cert.pem'), TASKWIRE_TLS_KEY: join(dir, 'key.pem') },
  });
  baseUrl = `https://localhost:${stack.api.port}`;
});
afterAll(async () => {
  await stack?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function http1Post(path: string, body: unknown, ca?: Buffer): Promise<{ status: number; alpn: string | false | null; json: unknown }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      `${baseUrl}${path}`,
      { method: 'POST', ca, headers: { 'content-type': 'application/json' }, ALPNProtocols: ['http/1.1'], agent: false } as https.RequestOptions,
      (res) => {
        let text = '';
        res.on('data', (b: Buffer) => (text += b.toString()));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, alpn: (res.socket as import('node:tls').TLSSocket).alpnProtocol, json: JSON.parse(text) }),
        );
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

describe('TLS (TASKWIRE_TLS_CERT, TASKWIRE_TLS_KEY)', () => {
  it('says so when it starts', () => {
    expect(stack.api.output()).toMatch(/API listening on \S+ \(gRPC, gRPC-Web, Connect; TLS: h2 and HTTP\/1\.1/);
  });

  it('serves gRPC over h2 to a client that trusts the certificate', async () => {
    const c = createTaskwireClient({ baseUrl, ca: cert });
    const task = await c.start(hello, { args: ['TLS'] });
    expect(await c.wait(task)).toBe('Hello TLS!');
  });

  it('serves the Connect protocol with JSON over HTTP/1.1 on the same port', async () => {
    const c = createTaskwireClient({ baseUrl, ca: cert });
    const task = await c.start(hello, { args: ['h1'] });
    await c.wait(task);
    const res = await http1Post('/taskwire.v1.TaskService/GetStatus', { id: task.id }, cert);
    expect(res.alpn).toBe('http/1.1');
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ task: { id: task.id, state: 'TASK_STATE_SUCCESS', result: 'Hello h1!' } });
  });

  it('is refused by a client that does not trust the certificate, and by a cleartext client', async () => {
    const untrusting = await createTaskwireClient({ baseUrl })
      .start(hello)
      .catch((e: unknown) => ConnectError.from(e));
    expect(untrusting).toBeInstanceOf(ConnectError);
    expect((untrusting as ConnectError).message).toMatch(/self[- ]signed certificate/);
    await expect(http1Post('/taskwire.v1.TaskService/GetStatus', {})).rejects.toThrow(/self[- ]signed certificate/);

    const cleartext = await createTaskwireClient({ baseUrl: `http://127.0.0.1:${stack.api.port}` })
      .start(hello)
      .catch((e: unknown) => ConnectError.from(e));
    expect(cleartext).toBeInstanceOf(ConnectError);
    expect((cleartext as ConnectError).code).not.toBe(Code.Unauthenticated);
  });

  it('checks the certificate and key at start', () => {
    const certFile = join(dir, 'cert.pem');
    expect(() => loadConfig({}, { TASKWIRE_TLS_CERT: certFile })).toThrow(/TLS needs both .*TASKWIRE_TLS_CERT and .*TASKWIRE_TLS_KEY/);
    writeFileSync(join(dir, 'junk.pem'), 'not a key');
    expect(() => loadConfig({}, { TASKWIRE_TLS_CERT: certFile, TASKWIRE_TLS_KEY: join(dir, 'junk.pem') })).toThrow(
      /are not a PEM certificate and its key/,
    );
    expect(() => loadConfig({}, { TASKWIRE_TLS_CERT: join(dir, 'missing.pem'), TASKWIRE_TLS_KEY: certFile })).toThrow(
      /TASKWIRE_TLS_CERT: cannot read/,
    );
  });
});
