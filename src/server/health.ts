/**
 * grpc.health.v1.Health: SERVING while Redis answers and takes writes, NOT_SERVING while
 * it does not (down, or out of memory). The status is kept by a monitor (connection
 * events plus a small write every few seconds), so
 * health checks cost no Redis round trip and Watch streams hear every change.
 */
import { create } from '@bufbuild/protobuf';
import { Code, ConnectError, type ServiceImpl } from '@connectrpc/connect';
import type { RedisClient } from '../redis.js';
import {
  type Health,
  HealthCheckResponse_ServingStatus as Status,
  HealthCheckResponseSchema,
  HealthListResponseSchema,
} from '../../gen/grpc/health/v1/health_pb.js';
import { quote } from '../errors.js';
import { keys } from '../store/keys.js';
import { callEndOf } from './callEnd.js';
import { Mailbox } from './mailbox.js';

export class RedisMonitor {
  private up: boolean;
  private readonly listeners = new Set<(up: boolean) => void>();
  private readonly timer: NodeJS.Timeout;

  constructor(redis: RedisClient, intervalMs = 2000) {
    this.up = redis.status === 'ready';
    redis.on('ready', () => this.set(true));
    redis.on('close', () => this.set(false));
    redis.on('end', () => this.set(false));
    this.timer = setInterval(() => {
      // A write, not a PING: a Redis at maxmemory answers PING but refuses every Start.
      redis.set(keys.health(), '1', 'PX', 4 * intervalMs).then(
        () => this.set(true),
        () => this.set(false),
      );
    }, intervalMs);
    this.timer.unref();
  }

  get healthy(): boolean {
    return this.up;
  }

  onChange(fn: (up: boolean) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  close(): void {
    clearInterval(this.timer);
  }

  private set(up: boolean): void {
    if (up === this.up) return;
    this.up = up;
    for (const fn of this.listeners) fn(up);
  }
}

export function createHealthService(monitor: RedisMonitor, services: readonly string[], heartbeatMs: number): ServiceImpl<typeof Health> {
  const known = new Set(['', ...services]);
  const status = () => (monitor.healthy ? Status.SERVING : Status.NOT_SERVING);
  return {
    check(req) {
      if (!known.has(req.service)) throw new ConnectError(`unknown service ${quote(req.service)}`, Code.NotFound);
      return create(HealthCheckResponseSchema, { status: status() });
    },
    list() {
      const statuses: Record<string, ReturnType<typeof create<typeof HealthCheckResponseSchema>>> = {};
      for (const s of known) statuses[s] = create(HealthCheckResponseSchema, { status: status() });
      return create(HealthListResponseSchema, { statuses });
    },
    async *watch(req, ctx) {
      if (!known.has(req.service)) {
        yield create(HealthCheckResponseSchema, { status: Status.SERVICE_UNKNOWN });
        return;
      }
      const box = new Mailbox<boolean>();
      const off = monitor.onChange((up) => box.push(up));
      const end = callEndOf(ctx);
      end.add(box);
      try {
        let last = status();
        yield create(HealthCheckResponseSchema, { status: last });
        for (;;) {
          const next = await box.next(heartbeatMs);
          if ('closed' in next) return;
          if ('timeout' in next) continue;
          const now = status();
          if (now !== last) yield create(HealthCheckResponseSchema, { status: (last = now) });
        }
      } finally {
        end.remove(box);
        off();
      }
    },
  };
}
