/**
 * Connections that never complete their HTTP/2 preface or HTTP/1.1 request head are closed
 * by the server after a few seconds, so idle sockets cannot pile up against its fd limit;
 * a connection that did complete it stays usable.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from './helpers/stack.js';

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ workers: 0 });
});
afterAll(async () => {
  await stack?.stop();
});

/** Open a TCP connection, send `bytes`, and resolve when the server closes it. */
function closedByServer(bytes: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(stack.api.port, '127.0.0.1', () => {
      if (bytes) socket.write(bytes);
    });
    socket.on('data', () => {});
    socket.on('error', reject);
    socket.on('close', () => resolve());
  });
}

describe('connections that do not finish their handshake', () => {
  it('are closed by the server: one that sends nothing, one byte, or half the HTTP/2 preface', async () => {
    await Promise.all([closedByServer(''), closedByServer('P'), closedByServer('PRI * HTTP/2.0\r\n')]);
  });

  it('leave a completed connection working', async () => {
    const task = await stack.client.start('hello', { queue: 'nobody' });
    const { task: read } = await stack.client.rpc.getStatus({ id: task.id });
    expect(read?.id).toBe(task.id);
  });
});
