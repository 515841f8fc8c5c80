/**
 * The client's own gRPC transport (createTaskwireTransport), as a user sees it: the same
 * errors as connect-node's createGrpcTransport for the same calls (code, message, details,
 * metadata), a deadline or an abort that frees the server's stream, and a process that
 * exits by itself once its calls are done. (A watch resuming across a server restart is in
 * client.test.ts; TLS in tls.test.ts; the bearer-token interceptor in auth.test.ts.)
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BadRequestSchema, ErrorInfoSchema } from '../gen/google/rpc/error_details_pb.js';
import { ServerReflection } from '../gen/grpc/reflection/v1/reflection_pb.js';
import { TaskService } from '../gen/taskwire/v1/task_service_pb.js';
import { createTaskwireTransport, TaskState, type TaskwireTransportOptions } from '../src/client/index.js';
import { hello } from '../src/tasks/examples.js';
import { serverStreamsOpen } from './helpers/metrics.js';
import { startStack, type Stack } from './helpers/stack.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const NO_SUCH_TASK = '0190a8c4-1111-7aaa-8bbb-123456789abc';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ env: { TASKWIRE_LEASE: '2s' } });
});
afterAll(async () => {
  await stack?.stop();
});

type Options = Omit<TaskwireTransportOptions, 'baseUrl'> & { baseUrl?: string };
/** connect-node's transport as TaskwireClient used it before (no compression), and ours. */
const transports = (o: Options = {}): [string, Transport][] => [
  ['connect-node', createGrpcTransport({ baseUrl: stack.baseUrl, acceptCompression: [], ...o })],
  ['taskwire', createTaskwireTransport({ baseUrl: stack.baseUrl, ...o })],
];

/** Everything a caller can see of an error (but the Date header). */
function seen(err: unknown) {
  expect(err, 'the call was expected to fail').toBeInstanceOf(ConnectError);
  const e = err as ConnectError;
  const metadata: [string, string][] = [];
  e.metadata.forEach((v, k) => {
    if (k !== 'date') metadata.push([k, v]);
  });
  return {
    code: Code[e.code],
    message: e.message,
    rawMessage: e.rawMessage,
    details: e.details.map((d) => ('desc' in d ? d.desc.typeName : d.type)),
    errorInfo: e.findDetails(ErrorInfoSchema),
    badRequest: e.findDetails(BadRequestSchema),
    metadata,
    cause: (e.cause as { code?: string } | undefined)?.code,
  };
}

/** The same failing call through connect-node's transport and ours: what each caller sees. */
async function sideBySide(call: (c: Client<typeof TaskService>) => Promise<unknown>, o: Options = {}) {
  const out: ReturnType<typeof seen>[] = [];
  for (const [, t] of transports(o))
    out.push(
      seen(
        await call(createClient(TaskService, t)).then(
          () => undefined,
          (e: unknown) => e,
        ),
      ),
    );
  expect(out[1]).toEqual(out[0]);
  return out[1]!;
}

async function drain(stream: AsyncIterable<unknown>): Promise<void> {
  for await (const m of stream) void m;
}

describe('errors, side by side with connect-node', () => {
  it('NOT_FOUND with its ErrorInfo, on a unary call and on a stream', async () => {
    const unary = await sideBySide((c) => c.getStatus({ id: NO_SUCH_TASK }));
    expect(unary.code).toBe('NotFound');
    expect(unary.errorInfo[0]).toMatchObject({ reason: 'TASK_NOT_FOUND', domain: 'taskwire.dev' });
    expect(unary.metadata).toContainEqual(['grpc-status', String(Code.NotFound)]);

    const stream = await sideBySide((c) => drain(c.watchStatus({ id: NO_SUCH_TASK })));
    expect(stream).toEqual(unary);
  });

  it('INVALID_ARGUMENT with ErrorInfo and BadRequest', async () => {
    const e = await sideBySide((c) => c.start({ name: 'hello', queue: 'no spaces allowed' }));
    expect(e.code).toBe('InvalidArgument');
    expect(e.details).toEqual(['google.rpc.ErrorInfo', 'google.rpc.BadRequest']);
    expect(e.badRequest[0]?.fieldViolations[0]?.field).toBe('queue');
  });

  it('UNIMPLEMENTED for a method the server does not have (an interceptor changed the URL)', async () => {
    const elsewhere: Interceptor = (next) => (req) => next({ ...req, url: req.url.replace(/GetStatus$/, 'NoSuchMethod') });
    const e = await sideBySide((c) => c.getStatus({ id: NO_SUCH_TASK }), { interceptors: [elsewhere] });
    expect(e.code).toBe('Unimplemented');
  });

  it('RESOURCE_EXHAUSTED for a reply larger than readMaxBytes', async () => {
    const task = await stack.client.start(hello, { countdownMs: 3_600_000 });
    const e = await sideBySide((c) => c.getStatus({ id: task.id }), { readMaxBytes: 64 });
    expect(e.code).toBe('ResourceExhausted');
    expect(e.rawMessage).toMatch(/^message size \d+ is larger than configured readMaxBytes 64$/);
  });

  it('UNAVAILABLE when nothing listens at the address', async () => {
    const probe = createServer();
    const port = await new Promise<number>((r) => probe.listen(0, '127.0.0.1', () => r((probe.address() as { port: number }).port)));
    await new Promise((r) => probe.close(r));
    const e = await sideBySide((c) => c.getStatus({ id: NO_SUCH_TASK }), { baseUrl: `http://127.0.0.1:${port}` });
    expect(e.code).toBe('Unavailable');
    expect(e.cause).toBe('ECONNREFUSED');
  });
});

describe('replies, side by side with connect-node', () => {
  it('an empty reply (every field at its default: zero bytes) and a full one read the same', async () => {
    const task = await stack.client.start(hello, { args: ['same'], countdownMs: 3_600_000 });
    const replies = [];
    for (const [, t] of transports()) {
      const c = createClient(TaskService, t);
      replies.push([await c.listTasks({ createdAfter: timestampFromMs(Date.now() + 3_600_000) }), await c.getStatus({ id: task.id })]);
    }
    expect(replies[1]).toEqual(replies[0]);
    expect(replies[1]![0]).toMatchObject({ tasks: [], nextPageToken: '' });
    expect(replies[1]![1]!).toMatchObject({ task: { id: task.id, state: TaskState.PENDING } });
  });
});

describe('streams', () => {
  it('a bidi stream (server reflection) gives the same answers through both transports', async () => {
    const lists: string[][] = [];
    for (const [, t] of transports()) {
      const requests = (async function* () {
        yield { messageRequest: { case: 'listServices' as const, value: '' } };
        yield { messageRequest: { case: 'fileContainingSymbol' as const, value: TaskService.typeName } };
      })();
      const answers: string[] = [];
      for await (const res of createClient(ServerReflection, t).serverReflectionInfo(requests)) {
        answers.push(res.messageResponse.case ?? '');
        if (res.messageResponse.case === 'listServicesResponse') answers.push(...res.messageResponse.value.service.map((s) => s.name));
      }
      lists.push(answers);
    }
    expect(lists[1]).toEqual(lists[0]);
    expect(lists[1]).toEqual(expect.arrayContaining(['listServicesResponse', TaskService.typeName, 'fileDescriptorResponse']));
  });

  it('a watch past its deadline fails with DEADLINE_EXCEEDED and the server lets go of it', async () => {
    const task = await stack.client.start(hello, { countdownMs: 3_600_000 });
    expect(await serverStreamsOpen(stack.baseUrl, 0)).toBe(0);
    const c = createClient(TaskService, createTaskwireTransport({ baseUrl: stack.baseUrl }));
    const e = seen(await drain(c.watchStatus({ id: task.id }, { timeoutMs: 300 })).catch((err: unknown) => err));
    expect(e.code).toBe('DeadlineExceeded');
    expect(e.rawMessage).toBe('the operation timed out'); // connect-node's words
    expect(await serverStreamsOpen(stack.baseUrl, 0)).toBe(0);
  });

  it('an aborted watch fails with CANCELED and the server lets go of it', async () => {
    const task = await stack.client.start(hello, { countdownMs: 3_600_000 });
    const ctl = new AbortController();
    const watch = stack.client.watch(task.id, { signal: ctl.signal });
    expect((await watch.next()).value?.state).toBe(TaskState.PENDING);
    expect(await serverStreamsOpen(stack.baseUrl, 1)).toBe(1);
    ctl.abort();
    const e = seen(await watch.next().catch((err: unknown) => err));
    expect(e.code).toBe('Canceled');
    expect(await serverStreamsOpen(stack.baseUrl, 0)).toBe(0);
  });
});

describe("a call's signal, as an interceptor sees it, side by side with connect-node", () => {
  /** How the signal of each call the interceptor saw stood, when `at` was called. */
  const watched = () => {
    const signals: AbortSignal[] = [];
    const interceptor: Interceptor = (next) => (req) => {
      signals.push(req.signal);
      return next(req);
    };
    const at = () =>
      signals.map((s) => ({
        aborted: s.aborted,
        reason: s.reason instanceof ConnectError ? Code[s.reason.code] : (s.reason as Error | undefined)?.name,
      }));
    return { interceptor, at };
  };

  it("aborts once a call is over: done (AbortError), failed (its error), aborted by the caller (the caller's reason)", async () => {
    const task = await stack.client.start(hello, { args: ['signal'] });
    await stack.client.wait(task);
    const seenBy: unknown[] = [];
    for (const name of ['connect-node', 'taskwire']) {
      const w = watched();
      const rpc = createClient(TaskService, transports({ interceptors: [w.interceptor] }).find(([n]) => n === name)![1]);
      await rpc.getStatus({ id: task.id });
      await rpc.getStatus({ id: NO_SUCH_TASK }).catch(() => {});
      const ctl = new AbortController();
      ctl.abort();
      const aborted = await rpc.getStatus({ id: task.id }, { signal: ctl.signal }).then(
        () => 'no error',
        (e: unknown) => Code[ConnectError.from(e).code],
      );
      const whileStreaming: unknown[] = [];
      for await (const m of rpc.watchStatus({ id: task.id })) {
        void m;
        whileStreaming.push(w.at().at(-1));
      }
      seenBy.push({ calls: w.at(), aborted, whileStreaming });
    }
    expect(seenBy[1]).toEqual(seenBy[0]);
    expect(seenBy[1]).toEqual({
      calls: [
        { aborted: true, reason: 'AbortError' },
        { aborted: true, reason: 'NotFound' },
        { aborted: true, reason: 'AbortError' },
        { aborted: true, reason: 'AbortError' },
      ],
      aborted: 'Canceled',
      whileStreaming: [{ aborted: false, reason: undefined }],
    });
  });
});

describe('a process using the client', () => {
  it('exits by itself once its calls are done: failed ones, an aborted watch and a watch left early included', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'taskwire-exit-'));
    try {
      const script = join(dir, 'main.mts');
      writeFileSync(
        script,
        [
          `import { createTaskwireClient } from ${JSON.stringify(pathToFileURL(join(ROOT, 'src/client/index.ts')).href)};`,
          'const tw = createTaskwireClient({ baseUrl: process.argv[2] });',
          "const task = await tw.start('hello', { args: ['exit'] });",
          'console.log(await tw.wait(task));',
          `await tw.status('${NO_SUCH_TASK}').catch((e) => console.log(e.code));`,
          'const ctl = new AbortController();',
          'const watch = tw.watch(task.id, { afterVersion: 0, signal: ctl.signal });',
          'await watch.next();',
          'ctl.abort();',
          'await watch.next().catch((e) => console.log(e.code));',
          // A watch left with a break, on a task that stays PENDING (its stream would stay open).
          "const later = await tw.start('hello', { countdownMs: 3_600_000 });",
          'for await (const t of tw.watch(later)) { console.log(t.state); break; }',
          // Nothing is closed: the process must end because nothing is left to do.
        ].join('\n'),
      );
      const child = spawn(process.execPath, ['--import', 'tsx', script, stack.baseUrl], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (b: Buffer) => (out += b.toString()));
      child.stderr.on('data', (b: Buffer) => (out += b.toString()));
      const exited = new Promise<number | string>((r) => child.once('exit', (code, signal) => r(code ?? signal ?? -1)));
      let timer: NodeJS.Timeout | undefined;
      const stuck = new Promise<'still running'>((r) => (timer = setTimeout(() => r('still running'), 20_000)));
      const outcome = await Promise.race([exited, stuck]);
      clearTimeout(timer);
      if (outcome === 'still running') {
        child.kill('SIGKILL');
        await exited;
      }
      expect(outcome, out).toBe(0);
      expect(out.split('\n')).toEqual(['Hello exit!', String(Code.NotFound), String(Code.Canceled), String(TaskState.PENDING), '']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('compress: true', () => {
  it('sends gzip and reads gzipped replies, on a unary call and on a stream', async () => {
    const seenHeaders: [string | null, string | null][] = [];
    const capture: Interceptor = (next) => async (req) => {
      const res = await next(req);
      seenHeaders.push([req.header.get('grpc-encoding'), res.header.get('grpc-encoding')]);
      return res;
    };
    const client = createClient(TaskService, createTaskwireTransport({ baseUrl: stack.baseUrl, compress: true, interceptors: [capture] }));
    const big = 'x'.repeat(5000);
    const started = await client.start({ name: 'hello', args: { values: [{ kind: { case: 'stringValue', value: big } }] } });
    const status = await client.getStatus({ id: started.task!.id });
    expect(status.task?.args?.values[0]?.kind.value).toBe(big);
    const states: TaskState[] = [];
    for await (const res of client.watchStatus({ id: started.task!.id })) {
      if (res.event.case !== 'task') continue;
      expect(res.event.value.args?.values[0]?.kind.value).toBe(big);
      states.push(res.event.value.state);
      if (res.event.value.state === TaskState.SUCCESS) break;
    }
    expect(states.at(-1)).toBe(TaskState.SUCCESS);
    expect(seenHeaders).toEqual([
      ['gzip', 'gzip'],
      ['gzip', 'gzip'],
      ['gzip', 'gzip'],
    ]);
  });
});
