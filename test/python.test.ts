/**
 * The proto works outside Node: examples/python (grpcio, code generated from proto/ at test
 * time by examples/python/generate.sh) starts `hello`, watches it and prints the result.
 */
import { execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTaskwireClient, TaskState } from '../src/client/index.js';
import { startStack, type Stack } from './helpers/stack.js';

const EXAMPLE = fileURLToPath(new URL('../examples/python/', import.meta.url));
const TOKEN = 'python-example-token-0123456789';

/** A python3 that has grpcio (Debian's python3-grpcio is for /usr/bin/python3), or why not. */
function findPython(): { python?: string; missing?: string } {
  for (const python of ['/usr/bin/python3', 'python3']) {
    try {
      execFileSync(python, ['-c', 'import grpc, google.protobuf'], { stdio: 'ignore' });
      return { python };
    } catch {
      // try the next one
    }
  }
  return { missing: 'no python3 with grpcio: apt-get install -y python3-grpcio (what .ci/run does)' };
}

function findGenerator(): string | undefined {
  for (const tool of ['protoc', 'grpc_python_plugin']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      return `no ${tool}: apt-get install -y protobuf-compiler protobuf-compiler-grpc (what .ci/run does)`;
    }
  }
  return undefined;
}

const { python, missing } = findPython();
const why = missing ?? findGenerator();
if (why) console.warn(`test/python.test.ts is skipped: ${why}`);

function run(args: string[], env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(python!, args, { cwd: EXAMPLE, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    child.once('exit', (code) => resolve({ code, out }));
  });
}

describe.skipIf(why !== undefined)('examples/python (grpcio)', () => {
  let stack: Stack;
  beforeAll(async () => {
    execFileSync('sh', [`${EXAMPLE}generate.sh`], { stdio: 'ignore' });
    stack = await startStack({ env: { TASKWIRE_TOKENS: TOKEN } });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('starts hello, watches every state and prints the result', async () => {
    const target = `127.0.0.1:${stack.api.port}`;
    const { code, out } = await run(['hello.py', 'Lucy'], { TASKWIRE_TARGET: target, TASKWIRE_TOKEN: TOKEN });
    expect(out).toMatch(/^started ([0-9a-f-]{36})\n/);
    const id = /^started (\S+)/.exec(out)![1]!;
    // Watched from version 0 (after_version): every version, in order, then the result.
    expect(out).toContain('TASK_STATE_PENDING v1\nTASK_STATE_STARTED v2\nTASK_STATE_SUCCESS v3\nresult: "Hello Lucy!"\n');
    expect(code).toBe(0);
    // The task the Python client started is the one the server ran.
    const task = await createTaskwireClient({ baseUrl: stack.baseUrl, token: TOKEN }).status(id);
    expect(task.state).toBe(TaskState.SUCCESS);
    expect(task.name).toBe('hello');
  });

  it('reports a refusal by its gRPC status (here: no token)', async () => {
    const { code, out } = await run(['hello.py'], { TASKWIRE_TARGET: `127.0.0.1:${stack.api.port}`, TASKWIRE_TOKEN: '' });
    expect(out).toContain('Start refused: UNAUTHENTICATED: this server requires a valid bearer token');
    expect(code).toBe(2);
  });
});
