/**
 * A Redis at maxmemory with the noeviction policy answers PING but refuses every write.
 * Callers hear RESOURCE_EXHAUSTED naming the cause (not INTERNAL), and the health service
 * says NOT_SERVING until Redis takes writes again, so a load balancer stops sending work.
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code, ConnectError } from '../src/client/index.js';
import { redisClient } from './helpers/redis.js';
import { startStack, type Stack } from './helpers/stack.js';

const PROTO = fileURLToPath(new URL('../proto/', import.meta.url));

let stack: Stack;
let redis: Redis;
let health: any;

beforeAll(async () => {
  stack = await startStack({ workers: 0 });
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
    const task = await stack.client.start('hello', { args: ['room again'] });
    expect(task.id).toBeTruthy();
  });
});
