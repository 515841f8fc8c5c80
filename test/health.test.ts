/**
 * The standard gRPC health service (grpc.health.v1.Health), as a load balancer or
 * grpc_health_probe calls it: through @grpc/grpc-js with a client built by proto-loader
 * from proto/grpc/health/v1/health.proto. (NOT_SERVING while Redis is down is covered by
 * the Redis fault tests.)
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from './helpers/stack.js';

const PROTO = fileURLToPath(new URL('../proto/', import.meta.url));

let stack: Stack;
let health: any;

beforeAll(async () => {
  stack = await startStack({ workers: 0 });
  const def = protoLoader.loadSync('grpc/health/v1/health.proto', { includeDirs: [PROTO], enums: String, defaults: true });
  const Health = (grpc.loadPackageDefinition(def) as any).grpc.health.v1.Health as typeof grpc.Client;
  health = new Health(`127.0.0.1:${stack.api.port}`, grpc.credentials.createInsecure());
});
afterAll(async () => {
  health?.close();
  await stack?.stop();
});

function check(service: string): Promise<{ status: string }> {
  return new Promise((resolve, reject) =>
    health.check({ service }, (err: Error | null, res: { status: string }) => (err ? reject(err) : resolve(res))),
  );
}

/** The first message of a Watch stream, then the stream is cancelled. */
function firstWatched(service: string): Promise<{ status: string }> {
  return new Promise((resolve, reject) => {
    const call = health.watch({ service }) as grpc.ClientReadableStream<{ status: string }>;
    call.once('data', (msg: { status: string }) => {
      resolve(msg);
      call.cancel();
    });
    call.on('error', (err: grpc.ServiceError) => {
      if (err.code !== grpc.status.CANCELLED) reject(err);
    });
  });
}

describe('grpc.health.v1.Health', () => {
  it('Check: the server as a whole and TaskService are SERVING', async () => {
    expect(await check('')).toEqual({ status: 'SERVING' });
    expect(await check('taskwire.v1.TaskService')).toEqual({ status: 'SERVING' });
  });

  it('Check of a service the server does not have is NOT_FOUND', async () => {
    await expect(check('taskwire.v1.Nope')).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  });

  it('Watch sends SERVING first', async () => {
    expect(await firstWatched('')).toEqual({ status: 'SERVING' });
    expect(await firstWatched('taskwire.v1.TaskService')).toEqual({ status: 'SERVING' });
  });

  it('Watch of an unknown service says SERVICE_UNKNOWN, as the protocol asks', async () => {
    expect(await firstWatched('taskwire.v1.Nope')).toEqual({ status: 'SERVICE_UNKNOWN' });
  });
});
