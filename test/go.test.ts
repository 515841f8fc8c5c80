/**
 * examples/go against a live server, where a Go toolchain and grpc-go are at hand offline
 * (Debian: golang-go golang-google-grpc-dev golang-google-protobuf-dev protoc-gen-go-grpc
 * golang-github-golang-protobuf-1-5-dev, built in GOPATH mode from /usr/share/gocode; .ci/run
 * installs them). Skipped, saying why, where they are missing, except under CI, where that is a failure.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prerequisite } from './helpers/prerequisite.js';
import { startStack, type Stack } from './helpers/stack.js';

const EXAMPLE = fileURLToPath(new URL('../examples/go/', import.meta.url));
const GOCODE = '/usr/share/gocode';

function missing(): string | undefined {
  for (const tool of ['go', 'protoc', 'protoc-gen-go-grpc']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      return `no ${tool} on PATH`;
    }
  }
  // grpc-go's codec must speak the current protobuf API (github.com/golang/protobuf 1.4+).
  for (const pkg of ['google.golang.org/grpc', 'google.golang.org/protobuf/cmd/protoc-gen-go', 'github.com/golang/protobuf/proto/wrappers.go']) {
    if (!existsSync(join(GOCODE, 'src', pkg))) return `no ${pkg} under ${GOCODE} (Debian's golang-google-grpc-dev, golang-google-protobuf-dev)`;
  }
  return undefined;
}

const canRun = prerequisite('test/go.test.ts', missing());

describe.skipIf(!canRun)('examples/go (grpc-go)', () => {
  let stack: Stack;
  let work: string;
  let binary: string;
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'taskwire-go-'));
    const env: NodeJS.ProcessEnv = { ...process.env, GO111MODULE: 'off', GOPATH: `${work}:${GOCODE}`, GOFLAGS: '' };
    // protoc-gen-go from Debian's source, then the generated code and the example, offline.
    mkdirSync(join(work, 'bin'));
    execFileSync('go', ['build', '-o', join(work, 'bin', 'protoc-gen-go'), 'google.golang.org/protobuf/cmd/protoc-gen-go'], { env, cwd: work });
    execFileSync('sh', [join(EXAMPLE, 'generate.sh')], { env: { ...env, PATH: `${join(work, 'bin')}:${env.PATH}` }, stdio: 'ignore' });
    mkdirSync(join(work, 'src', 'taskwire.example'), { recursive: true });
    symlinkSync(EXAMPLE, join(work, 'src', 'taskwire.example', 'hello'), 'dir');
    binary = join(work, 'bin', 'hello');
    execFileSync('go', ['build', '-o', binary, '.'], { env, cwd: join(work, 'src', 'taskwire.example', 'hello') });
    stack = await startStack();
  }, 300_000);
  afterAll(async () => {
    await stack?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('starts hello, watches every state and prints the result', async () => {
    const child = spawn(binary, ['Gopher'], {
      env: { ...process.env, TASKWIRE_TARGET: `127.0.0.1:${stack.api.port}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const code = await new Promise((r) => child.once('exit', r));
    expect(out).toMatch(/^started [0-9a-f-]{36}\n/);
    expect(out).toContain('TASK_STATE_PENDING v1\nTASK_STATE_STARTED v2\nTASK_STATE_SUCCESS v3\nresult: "Hello Gopher!"\n');
    expect(code).toBe(0);
  });
});
