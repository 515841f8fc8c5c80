/**
 * The TypeScript client as a user sees it: importable as `taskwire/client`, typed from the
 * task definitions, a watch that survives its API server restarting, and wait().
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import { Code, ConnectError, TaskFailedError, TaskState, type JsonValue, type Task } from '../src/client/index.js';
import { keys } from '../src/store/keys.js';
import { fail, hello, progress } from '../src/tasks/examples.js';
import { redisClient } from './helpers/redis.js';
import { startStack, type Stack } from './helpers/stack.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ env: { TASKWIRE_LEASE: '2s' } });
});
afterAll(async () => {
  await stack?.stop();
});

describe('typed per task definition', () => {
  it('start(hello, { args }) queues it and wait() resolves with the typed result', async () => {
    const task = await stack.client.start(hello, { args: ['Lucy'] });
    expect(task.name).toBe('hello');
    const greeting = await stack.client.wait(task);
    expectTypeOf(greeting).toEqualTypeOf<string>();
    expect(greeting).toBe('Hello Lucy!');

    const p = await stack.client.start(progress, { kwargs: { steps: 2, interval: 10 } });
    const out = await stack.client.wait(p);
    expectTypeOf(out).toEqualTypeOf<{ steps: number }>();
    expect(out).toEqual({ steps: 2 });
  });

  it('refuses, at compile time, arguments and results the definition does not allow', () => {
    // Type-checks a caller's module with the project's compiler settings: each call marked
    // WRONG must be an error on its own line, and the well-typed calls beside them must not.
    const file = join(ROOT, 'test', '__typed_calls__.ts');
    const source = [
      "import { createTaskwireClient } from '../src/client/index.js';",
      "import { hello } from '../src/tasks/examples.js';",
      'const client = createTaskwireClient();',
      'export async function calls(): Promise<void> {',
      "  await client.start(hello, { args: ['Lucy', 1] });",
      "  await client.start(hello, { kwargs: { name: 'Ada' } });",
      '  const s: string = await client.wait(await client.start(hello));',
      '  await client.start(hello, { args: [42] }); // WRONG',
      '  await client.start(hello, { kwargs: { nope: 1 } }); // WRONG',
      '  const n: number = await client.wait(await client.start(hello)); // WRONG',
      '  void s, n;',
      '}',
    ].join('\n');
    const configPath = join(ROOT, 'tsconfig.json');
    const config = ts.getParsedCommandLineOfConfigFile(configPath, {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} });
    expect(config).toBeDefined();
    const host = ts.createCompilerHost(config!.options);
    const getSourceFile = host.getSourceFile.bind(host);
    host.getSourceFile = (name, language, ...rest) =>
      name === file ? ts.createSourceFile(name, source, language) : getSourceFile(name, language, ...rest);
    const fileExists = host.fileExists.bind(host);
    host.fileExists = (name) => name === file || fileExists(name);
    const program = ts.createProgram([file], config!.options, host);
    const sf = program.getSourceFile(file)!;
    const errorLines = [...program.getSyntacticDiagnostics(sf), ...program.getSemanticDiagnostics(sf)]
      .map((d) => sf.getLineAndCharacterOfPosition(d.start!).line)
      .sort((a, b) => a - b);
    const wrongLines = source.split('\n').flatMap((line, i) => (line.endsWith('// WRONG') ? [i] : []));
    expect(wrongLines).toHaveLength(3);
    expect(errorLines).toEqual(wrongLines);
  }, 60_000);

  it('by name, untyped: the result is a JsonValue', async () => {
    const task = await stack.client.start('hello', { kwargs: { name: 'Ada' } });
    const result = await stack.client.wait(task.id);
    expectTypeOf(result).toEqualTypeOf<JsonValue | undefined>();
    expect(result).toBe('Hello Ada!');
  });
});

describe('wait()', () => {
  it("rejects with the task's error when it fails", async () => {
    const task = await stack.client.start(fail, { args: ['the disk is full'], kwargs: { type: 'OSError' } });
    const err = await stack.client.wait(task).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TaskFailedError);
    const failed = err as TaskFailedError;
    expect(failed.state).toBe('FAILURE');
    expect(failed.errorType).toBe('OSError');
    expect(failed.errorMessage).toBe('the disk is full');
    expect(failed.task.id).toBe(task.id);
  });

  it('rejects with REVOKED when the task is cancelled', async () => {
    const task = await stack.client.start(hello, { countdownMs: 3_600_000 });
    const waiting = stack.client.wait(task).catch((e: unknown) => e);
    await stack.client.cancel(task.id, { reason: 'not needed' });
    const err = (await waiting) as TaskFailedError;
    expect(err).toBeInstanceOf(TaskFailedError);
    expect(err.state).toBe('REVOKED');
  });

  it('rejects with NOT_FOUND for an id that names no task', async () => {
    const err = await stack.client.wait('0190a8c4-1111-7aaa-8bbb-123456789abc').catch((e: unknown) => e);
    expect(ConnectError.from(err).code).toBe(Code.NotFound);
  });
});

describe('watch() across a restart of its API server', () => {
  it('resumes by itself from the last version it saw and sees every version exactly once', async () => {
    const port = stack.api.port;
    const task = await stack.client.start(progress, { kwargs: { steps: 20, interval: 150 } });
    const retries: bigint[] = [];
    // From version 0: every version the task goes through, from its first (PENDING).
    const stream = stack.client.watch(task.id, { afterVersion: 0, onRetry: (_e, _n, after) => retries.push(after ?? -1n) });
    const seen: Task[] = [];
    const next = async () => {
      const r = await stream.next();
      if (!r.done) seen.push(r.value);
      return r;
    };
    // Follow until the task is running and has reported progress.
    while ((seen.at(-1)?.version ?? 0n) < 4n) if ((await next()).done) break;
    const lastSeen = seen.at(-1)!.version;
    expect(seen.at(-1)!.state).toBe(TaskState.STARTED);

    // Take the API server away: the stream the watch is reading is cut.
    await stack.api.stop();
    // While it is away the task moves on (the worker writes to Redis), so these versions
    // can only reach the watch from the task's event log when it resumes.
    const redis = redisClient(stack.redis.url);
    try {
      const deadline = Date.now() + 15_000;
      while (Number(await redis.hget(keys.task('default', task.id), 'version')) < Number(lastSeen) + 3) {
        if (Date.now() > deadline) throw new Error('the task did not move on while the API server was down');
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      redis.disconnect();
    }
    // The same port again, as a restarted server (or a load balancer's next backend) would be.
    stack.api = await stack.startApi({ args: ['--port', String(port)] });

    for (;;) if ((await next()).done) break;
    expect(retries.length).toBeGreaterThan(0);
    expect(retries[0]).toBe(lastSeen);
    const versions = seen.map((t) => Number(t.version));
    const final = seen.at(-1)!;
    expect(final.state).toBe(TaskState.SUCCESS);
    expect(versions).toEqual(Array.from({ length: Number(final.version) }, (_, i) => i + 1));
    expect(final.result?.kind).toEqual({ case: 'structValue', value: expect.anything() });
  });
});

describe('importable as taskwire/client', () => {
  it('works from a consumer package that depends on taskwire', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'taskwire-consumer-'));
    try {
      mkdirSync(join(dir, 'node_modules'));
      symlinkSync(ROOT, join(dir, 'node_modules', 'taskwire'), 'dir');
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', type: 'module', dependencies: { taskwire: '*' } }));
      writeFileSync(
        join(dir, 'main.ts'),
        [
          "import { createTaskwireClient, TaskState } from 'taskwire/client';",
          'const tw = createTaskwireClient({ baseUrl: process.env.SERVER });',
          "const task = await tw.start('hello', { args: ['consumer'] });",
          'const result: unknown = await tw.wait(task);',
          'console.log(JSON.stringify({ result, state: TaskState[(await tw.status(task.id)).state] }));',
        ].join('\n'),
      );
      const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
      const child = spawn(process.execPath, ['--import', tsx, 'main.ts'], {
        cwd: dir,
        env: { ...process.env, SERVER: stack.baseUrl },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (b: Buffer) => (out += b.toString()));
      child.stderr.on('data', (b: Buffer) => (out += b.toString()));
      const code = await new Promise((r) => child.once('exit', r));
      expect(out).toContain('{"result":"Hello consumer!","state":"SUCCESS"}');
      expect(code).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
