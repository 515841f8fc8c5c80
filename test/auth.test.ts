/**
 * Bearer-token auth: off by default; with tokens set, a call without a valid one gets
 * UNAUTHENTICATED and nothing else, health stays public, reflection and /metrics are
 * public only when configured so.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Health, HealthCheckResponse_ServingStatus } from '../gen/grpc/health/v1/health_pb.js';
import { ServerReflection } from '../gen/grpc/reflection/v1/reflection_pb.js';
import { createTaskwireClient, type TaskwireClient } from '../src/client/index.js';
import { loadConfig } from '../src/config.js';
import { hello } from '../src/tasks/examples.js';
import { runTaskwire, type TaskwireProcess } from './helpers/processes.js';
import { startStack, type Stack } from './helpers/stack.js';

const TOKEN_A = 'tok-alpha-0123456789abcdef';
const TOKEN_B = 'tok-bravo-0123456789abcdef';
const TOKEN_FILE = 'tok-from-a-file-0123456789';

let stack: Stack;
let dir: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'taskwire-auth-'));
  stack = await startStack({ env: { TASKWIRE_TOKENS: `${TOKEN_A},${TOKEN_B}` } });
});
afterAll(async () => {
  await stack?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const url = (api: TaskwireProcess) => `http://127.0.0.1:${api.port}`;
const client = (api: TaskwireProcess, token?: string) => createTaskwireClient({ baseUrl: url(api), token });

async function refusal(call: Promise<unknown>): Promise<ConnectError> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'the call was expected to be refused').toBeInstanceOf(ConnectError);
  return err as ConnectError;
}

async function listServices(baseUrl: string, token?: string): Promise<string[]> {
  const reflection = createClient(ServerReflection, createGrpcTransport({ baseUrl }));
  const requests = (async function* () {
    yield { messageRequest: { case: 'listServices' as const, value: '' } };
  })();
  const names: string[] = [];
  const headers = token ? { authorization: `Bearer ${token}` } : undefined;
  for await (const res of reflection.serverReflectionInfo(requests, { headers })) {
    if (res.messageResponse.case === 'listServicesResponse') names.push(...res.messageResponse.value.service.map((s) => s.name));
  }
  return names;
}

describe('auth on (TASKWIRE_TOKENS)', () => {
  it('refuses every TaskService call without a token, or with a wrong one, with UNAUTHENTICATED alone', async () => {
    const good: TaskwireClient = client(stack.api, TOKEN_A);
    const task = await good.start(hello, { args: ['secret'] });
    await good.wait(task);

    const errors: ConnectError[] = [];
    for (const c of [client(stack.api), client(stack.api, 'not-a-valid-token-at-all'), client(stack.api, TOKEN_A.slice(0, -1))]) {
      errors.push(await refusal(c.start(hello, { args: ['x'] })));
      // An id that exists and one that does not: the same answer, so nothing is learnt.
      errors.push(await refusal(c.status(task.id)));
      errors.push(await refusal(c.status('0190a8c4-1111-7aaa-8bbb-123456789abc')));
      errors.push(await refusal(c.cancel(task.id)));
      errors.push(await refusal(c.wait(task.id)));
    }
    for (const e of errors) {
      expect(e.code).toBe(Code.Unauthenticated);
      expect(e.rawMessage).toBe('this server requires a valid bearer token (authorization: Bearer <token>)');
      expect(e.details).toEqual([]);
    }
  });

  it('accepts each configured token', async () => {
    for (const token of [TOKEN_A, TOKEN_B]) {
      const c = client(stack.api, token);
      expect(await c.wait(await c.start(hello, { args: [token.slice(4, 9)] }))).toMatch(/^Hello (alpha|bravo)!$/);
    }
  });

  it('answers health checks without a token (load balancers), but not reflection or /metrics', async () => {
    const health = createClient(Health, createGrpcTransport({ baseUrl: url(stack.api) }));
    expect((await health.check({ service: '' })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);

    expect((await refusal(listServices(url(stack.api)))).code).toBe(Code.Unauthenticated);
    expect(await listServices(url(stack.api), TOKEN_B)).toContain('taskwire.v1.TaskService');

    expect((await fetch(`${url(stack.api)}/metrics`)).status).toBe(401);
    const withToken = await fetch(`${url(stack.api)}/metrics`, { headers: { authorization: `Bearer ${TOKEN_A}` } });
    expect(withToken.status).toBe(200);
    expect(await withToken.text()).toContain('taskwire_tasks_started_total');
  });

  it('takes tokens from a file, and makes reflection and /metrics public when told to', async () => {
    const file = join(dir, 'tokens');
    writeFileSync(file, `# one token per line\n${TOKEN_FILE}\n\n`);
    const api = await stack.startApi({
      env: { TASKWIRE_TOKENS: '', TASKWIRE_TOKENS_FILE: file, TASKWIRE_PUBLIC: 'health,reflection,metrics' },
    });
    expect((await refusal(client(api, TOKEN_A).start(hello))).code).toBe(Code.Unauthenticated);
    const c = client(api, TOKEN_FILE);
    expect(await c.wait(await c.start(hello, { args: ['file'] }))).toBe('Hello file!');
    expect(await listServices(url(api))).toContain('taskwire.v1.TaskService');
    expect((await fetch(`${url(api)}/metrics`)).status).toBe(200);
    await api.stop();
  });

  it('the CLI client sends TASKWIRE_TOKEN', async () => {
    const env = { TASKWIRE_SERVER: url(stack.api) };
    const without = await runTaskwire(['start', 'hello', '--args', '["cli"]'], env);
    expect(without.code).toBe(2);
    expect(without.stderr).toContain('Unauthenticated: this server requires a valid bearer token');
    const withToken = await runTaskwire(['start', 'hello', '--args', '["cli"]', '--wait'], { ...env, TASKWIRE_TOKEN: TOKEN_B });
    expect(withToken.stdout).toContain('result "Hello cli!"');
    expect(withToken.code).toBe(0);
  });
});

describe('auth off (no tokens)', () => {
  it('serves every call without a token', async () => {
    const api = await stack.startApi({ env: { TASKWIRE_TOKENS: '' } });
    const c = client(api);
    expect(await c.wait(await c.start(hello, { args: ['open'] }))).toBe('Hello open!');
    expect(await listServices(url(api))).toContain('grpc.health.v1.Health');
    expect((await fetch(`${url(api)}/metrics`)).status).toBe(200);
    await api.stop();
  });
});

describe('auth settings are checked at start', () => {
  it('refuses a short token, an unreadable token file and an unknown public endpoint', async () => {
    // What `taskwire serve` does with a bad setting: exit 2 with a message naming it.
    const short = await runTaskwire(['serve', '--port', '0'], { REDIS_URL: stack.redis.url, TASKWIRE_TOKENS: 'abc' });
    expect(short.code).toBe(2);
    expect(short.stderr).toContain('TASKWIRE_TOKENS');
    expect(short.stderr).not.toContain('abc');
    // The same check (loadConfig is what every command calls first), for the other settings.
    expect(() => loadConfig({}, { TASKWIRE_TOKENS_FILE: join(dir, 'nope') })).toThrow(/TASKWIRE_TOKENS_FILE: cannot read/);
    writeFileSync(join(dir, 'empty'), '# nothing here\n');
    expect(() => loadConfig({}, { TASKWIRE_TOKENS_FILE: join(dir, 'empty') })).toThrow(/without any token/);
    expect(() => loadConfig({}, { TASKWIRE_TOKENS: TOKEN_A, TASKWIRE_PUBLIC: 'health,everything' })).toThrow(/TASKWIRE_PUBLIC/);
    expect(loadConfig({}, { TASKWIRE_TOKENS: ` ${TOKEN_A} ,${TOKEN_B}` }).tokens).toEqual([TOKEN_A, TOKEN_B]);
  });
});
