/**
 * The API server: TaskService, health and reflection on one port, over one command
 * connection and one subscriber connection to Redis. Stateless: run as many as you like.
 */
import { createContextValues } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { Health } from '../../gen/grpc/health/v1/health_pb.js';
import { TaskService } from '../../gen/taskwire/v1/task_service_pb.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { checkEvictionPolicy, connectReady } from '../redis.js';
import { TaskStore } from '../store/taskStore.js';
import { loadRegistry } from '../tasks/define.js';
import { withDashboard } from './dashboard.js';
import { TokenAuth, withHeaderAuth } from './auth.js';
import { createHealthService, RedisMonitor } from './health.js';
import { listen } from './http.js';
import { CallValues } from './grpc/callContext.js';
import { NativeGrpc } from './grpc/nativeGrpc.js';
import { withHoldableDeadlines } from './grpc/deadline.js';
import { CONNECTION, connectionOf, StreamLimits } from './limits.js';
import { ApiMetrics, withMetrics } from './metrics.js';
import { createReflection } from './reflection.js';
import { createTaskService } from './taskService.js';
import { WatchHub } from './watchHub.js';
import { noteQueue } from '../store/queueRegistry.js';
import { QueueReaders, unreadQueueHint } from '../store/queueReaders.js';
import { ScheduleStore } from '../beat/scheduleStore.js';

export type ServerConfig = Pick<
  Config,
  | 'redisUrl'
  | 'redisCluster'
  | 'host'
  | 'port'
  | 'tasksModule'
  | 'resultTtlMs'
  | 'eventLogCap'
  | 'maxPayloadBytes'
  | 'watchHeartbeatMs'
  | 'queues'
  | 'queuePartitions'
  | 'maxRequestBytes'
  | 'maxConnectionBufferBytes'
  | 'maxWatchersPerConnection'
  | 'maxStreams'
  | 'maxStreamBacklog'
  | 'tokens'
  | 'publicEndpoints'
  | 'tls'
>;

export interface ApiServer {
  port: number;
  stop(): Promise<void>;
}

export async function startApiServer(config: ServerConfig, log: Logger): Promise<ApiServer> {
  const url = config.redisCluster ?? config.redisUrl!;
  const registry = await loadRegistry(config.tasksModule);
  // A queue given two partition counts (setting and tasks module) stops the server here, before Redis.
  registry.queuePartitions(config.queuePartitions);
  const redis = await connectReady(url, 'api');
  const sub = await connectReady(url, 'api-watch', { queueWhileDown: true, noPipelining: true, subscriber: true });
  await checkEvictionPolicy(redis, log);

  const store = new TaskStore(redis, registry, config);
  // Subscribes to nothing until a watch opens.
  const hub = new WatchHub(sub, redis);
  for (const q of store.partitions.expand(config.queues)) await noteQueue(redis, q);
  const monitor = new RedisMonitor(redis);
  const reflection = createReflection([TaskService, Health]);
  const auth = new TokenAuth(config.tokens, config.publicEndpoints);
  const limits = new StreamLimits(config);
  const metrics = new ApiMetrics(redis, hub, store.partitions.expand(config.queues), () => limits.open);

  const schedules = new ScheduleStore(redis, store, config);
  metrics.countSchedules(() => schedules.list());

  const interceptors = [auth.interceptor(), limits.interceptor()];
  const onStarted = (t: Parameters<ApiMetrics['taskStarted']>[0]) => metrics.taskStarted(t);
  const taskService = createTaskService({
    store,
    hub,
    log,
    watchHeartbeatMs: config.watchHeartbeatMs,
    maxStreamBacklog: config.maxStreamBacklog,
    onStarted,
    readers: new QueueReaders(redis, (queue) => log.warn(unreadQueueHint(queue), { queue }), store.partitions),
    schedules,
  });
  const healthService = createHealthService(monitor, [TaskService.typeName], config.watchHeartbeatMs);
  // The same implementations and interceptors behind both: gRPC calls go the native path,
  // every other protocol (and reflection's bidi streams) through Connect's handler.
  const native = new NativeGrpc({
    readMaxBytes: config.maxRequestBytes,
    interceptors,
    contextValues: (stream) => new CallValues().set(CONNECTION, stream.session),
    auth,
    refusal: TokenAuth.refusal,
    maxConnectionBufferBytes: config.maxConnectionBufferBytes,
  })
    .service(TaskService, taskService)
    .service(Health, healthService)
    .servedElsewhere(reflection.v1[0])
    .servedElsewhere(reflection.v1alpha[0]);
  const rpc = connectNodeAdapter({
    readMaxBytes: config.maxRequestBytes,
    // A misspelt JSON field is refused (INVALID_ARGUMENT naming it), never silently dropped:
    // a dropped `countdown` would run the task at once.
    jsonOptions: { ignoreUnknownFields: false },
    interceptors,
    contextValues: (req) => createContextValues().set(CONNECTION, connectionOf(req)),
    routes(router) {
      router.service(TaskService, taskService);
      router.service(Health, healthService);
      router.service(...reflection.v1);
      router.service(...reflection.v1alpha);
    },
  });
  const handler = withMetrics(withHoldableDeadlines(withHeaderAuth(rpc, auth)), metrics, auth);
  let server: Awaited<ReturnType<typeof listen>>;
  try {
    server = await listen(
      await withDashboard(handler),
      config.host,
      config.port,
      config.tls,
      (stream, headers) => native.claim(stream, headers),
      // Node ends such a connection (GOAWAY); its clients see every call on it fail.
      (err) => log.warn(`an HTTP/2 connection failed: ${err.message}`),
    );
  } catch (err) {
    // The Redis connections are open by now: left open they would keep the process alive.
    monitor.close();
    await Promise.allSettled([redis.quit(), sub.quit()]);
    throw listenError(err, config.host, config.port);
  }
  const transport = config.tls ? 'TLS: h2 and HTTP/1.1' : 'h2c and HTTP/1.1';
  const access = auth.enabled ? `bearer token required, public: ${config.publicEndpoints.join(', ') || 'none'}` : 'no auth';
  log.info(`API listening on ${config.host}:${server.port} (gRPC, gRPC-Web, Connect; ${transport}; ${access})`);

  return {
    port: server.port,
    async stop() {
      await server.close();
      monitor.close();
      await Promise.allSettled([redis.quit(), sub.quit()]);
      log.info('API stopped');
    },
  };
}

/** A bind failure said the way a user can act on it. */
function listenError(err: unknown, host: string, port: number): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE') {
    return new Error(`cannot listen on ${host}:${port}: the port is in use (another taskwire?); choose another with --port / TASKWIRE_PORT`);
  }
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') {
    return new Error(`cannot listen on ${host}:${port}: this machine has no such address; check --host / TASKWIRE_HOST`);
  }
  if (code === 'EACCES') return new Error(`cannot listen on ${host}:${port}: permission denied; use a port above 1023`);
  return err instanceof Error ? err : new Error(String(err));
}
