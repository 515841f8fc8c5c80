/**
 * A connection that dies without a FIN or RST (a dropped NAT entry, a cable pulled) is
 * noticed by the client's keepalive pings: an open watch fails with UNAVAILABLE instead of
 * hanging, and with retries it resumes on a new connection, seeing every version once.
 * A watch stream on which nothing arrives, heartbeats included, is given up too, even
 * where no keepalive is sent.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ClientOptions, Code, ConnectError, createTaskwireClient, TaskState, type WatchOptions } from '../src/client/index.js';
import { startStack, type Stack } from './helpers/stack.js';

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ workers: 0, env: { TASKWIRE_WATCH_HEARTBEAT: '100ms' } });
});
afterAll(async () => {
  await stack?.stop();
});

/** A TCP proxy to the API whose connections can be made silent: bytes stop flowing both ways,
 * and neither end is told. */
async function silentProxy(port: number): Promise<{ port: number; silence(): void; close(): void }> {
  const sockets = new Set<net.Socket>();
  let silent = false;
  const server = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    for (const [from, to] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      sockets.add(from);
      from.on('data', (chunk) => {
        if (!silent) to.write(chunk);
      });
      from.on('error', () => {});
      from.on('close', () => to.destroy());
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    silence: () => (silent = true),
    close: () => {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}

/** Watch a waiting task through a proxy, silence the proxy after the first record, and
 * return how the watch ended. */
async function watchThroughSilence(clientOptions: ClientOptions, watchOptions: WatchOptions): Promise<ConnectError> {
  const proxy = await silentProxy(stack.api.port);
  const client = createTaskwireClient({ baseUrl: `http://127.0.0.1:${proxy.port}`, ...clientOptions });
  try {
    const task = await client.start('hello', { queue: 'nobody' });
    const watch = client.watch(task.id, { afterVersion: 0, maxRetries: 0, ...watchOptions });
    const first = await watch.next();
    expect(first.value?.state).toBe(TaskState.PENDING);
    proxy.silence();
    return await (async () => {
      for (;;) await watch.next();
    })().catch((e: unknown) => ConnectError.from(e));
  } finally {
    proxy.close();
  }
}

describe('client keepalive', () => {
  it('ends a watch whose connection went silent with UNAVAILABLE naming the keepalive', async () => {
    const error = await watchThroughSilence({ keepaliveMs: 200, keepaliveTimeoutMs: 300 }, {});
    expect(error.code, error.rawMessage).toBe(Code.Unavailable);
    expect(error.rawMessage).toMatch(/keepalive ping/);
  });

  it('gives up a watch stream that carries no heartbeat for heartbeatTimeoutMs, with keepalive off', async () => {
    const error = await watchThroughSilence({ keepaliveMs: 3_600_000 }, { heartbeatTimeoutMs: 1_000 });
    expect(error.code, error.rawMessage).toBe(Code.Unavailable);
    expect(error.rawMessage).toMatch(/no message or heartbeat from the server in 1000 ms/);
  });
});
