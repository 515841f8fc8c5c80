/**
 * A Redis at maxmemory with the noeviction policy answers PING but refuses every write.
 * Callers hear RESOURCE_EXHAUSTED naming the cause (not INTERNAL), and the health service
 * says NOT_SERVING until Redis takes writes again, so a load balancer stops sending work.
 * A worker whose result Redis refuses keeps it and writes it when Redis takes writes again:
 * the task is not run a second time.
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code, ConnectError, TaskState } from '../src/client/index.js';
import { redisClient } from './helpers/redis.js';
import { startStack, type Stack } from './helpers/stack.js';

const PROTO = fileURLToPath(new URL('../proto/', import.meta.url));

let stack: Stack;
let redis: Redis;
let health: any;

beforeAll(async () => {
  stack = await startStack({ workers: 1 });
  redis = redisClient(stack.redis.url);
  const def = protoLoader.loadSync('grpc/health/v1/health.proto', { includeDirs: [PROTO], enums: String, defaults: true });
  const Health = (grpc.loadPackageDefinition(def) as any).grpc.health.v1.Health as typeof grpc.Client;
  health = new Health(`127.0.0.1:${stack.api.port}`, grpc.credentials.createInsecure());
});
afterAll(async () => {
  health?.close();
  await redis?.config('SET', 'maxmemory', '0');
  redis?.disconnect();
  await stack?.stop();
});

/** Read a health Watch until it reports `want`. */
function watchUntil(want: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const call = health.watch({ service: '' }) as grpc.ClientReadableStream<{ status: string }>;
    call.on('data', (msg: { status: string }) => {
      if (msg.status !== want) return;
      resolve();
      call.cancel();
    });
    call.on('error', (err: grpc.ServiceError) => {
      if (err.code !== grpc.status.CANCELLED) reject(err);
    });
  });
}

describe('Redis out of memory', () => {
  it('refuses a Start with RESOURCE_EXHAUSTED naming the cause, and health is NOT_SERVING until Redis takes writes again', async () => {
    await redis.config('SET', 'maxmemory-policy', 'noeviction');
    await redis.config('SET', 'maxmemory', '1');
    const refused = await stack.client.start('hello', { args: ['full'] }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(refused?.code, refused?.rawMessage).toBe(Code.ResourceExhausted);
    expect(refused?.rawMessage).toMatch(/out of memory.*maxmemory/);
    await watchUntil('NOT_SERVING');

    await redis.config('SET', 'maxmemory', '0');
    await watchUntil('SERVING');
    const task = await stack.client.start('hello', { args: ['room again'], queue: 'nobody' });
    expect(task.id).toBeTruthy();
  });

  it('does not lose a finished result: the worker writes it once Redis takes writes again, and the task runs once', async () => {
    const task = await stack.client.start('sleep', { args: [1] });
    const watch = stack.client.watch(task.id, { afterVersion: 0 });
    for await (const t of watch) if (t.state === TaskState.STARTED) break;
    await redis.config('SET', 'maxmemory-policy', 'noeviction');
    await redis.config('SET', 'maxmemory', '1');
    // The worker says when Redis refuses the task's result.
    await stack.workers[0]!.waitFor(new RegExp(`task ${task.id}: .*OOM command not allowed`));
    await redis.config('SET', 'maxmemory', '0');
    const seen = [];
    for await (const t of stack.client.watch(task.id, { afterVersion: 0 })) seen.push(t);
    const last = seen.at(-1)!;
    expect(TaskState[last.state]).toBe('SUCCESS');
    expect(last.attempt).toBe(1);
    expect(seen.filter((t) => t.state === TaskState.STARTED)).toHaveLength(1);
  });
});
