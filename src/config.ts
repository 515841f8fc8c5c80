/**
 * The one place configuration is read: flags first, then environment variables, then
 * defaults. Everything is checked at start; a bad value stops the process with a message
 * naming the flag and the variable.
 *
 * One file, past the usual size: every setting (the SETTINGS table that --help and
 * docs/configuration.md are checked against), its parsing and its checks live together.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism, hostname } from 'node:os';
import { createSecureContext } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { DEFAULT_QUEUE, isValidQueueName, MAX_PARTITIONS } from './ids.js';

export interface Config {
  /** Unset in `taskwire dev` means: start a private redis-server. */
  redisUrl: string | undefined;
  /** A Redis Cluster to use instead of one Redis (never both). */
  redisCluster: RedisClusterTarget | undefined;
  host: string;
  port: number;
  concurrency: number;
  queues: string[];
  /** Partition count of each partitioned queue; every process must be given the same. */
  queuePartitions: Record<string, number>;
  /** Module whose default export is the task registry. */
  tasksModule: string;
  workerName: string;
  resultTtlMs: number;
  /** A worker that has not renewed its lease for this long is presumed dead; its tasks are
   * taken over within 0.75–1.25 leases by a worker with a free slot. */
  leaseMs: number;
  /** How long running tasks get to finish on shutdown before they are handed back. */
  shutdownGraceMs: number;
  /** A quiet watch stream carries a heartbeat message this often. */
  watchHeartbeatMs: number;
  /** Changes kept in a task's event log (for watchers resuming). */
  eventLogCap: number;
  /** Largest accepted args+kwargs, in bytes of JSON. */
  maxPayloadBytes: number;
  /** Where `taskwire dev` keeps the private Redis data. */
  dataDir: string;
  /** Largest accepted request message, in bytes (at least maxPayloadBytes). */
  maxRequestBytes: number;
  /** Bytes of unfinished request bodies held for the calls of one HTTP/2 connection. */
  maxConnectionBufferBytes: number;
  /** Server streams (watches) open at once on one HTTP connection. */
  maxWatchersPerConnection: number;
  /** Server streams (watches) open at once on the whole server. */
  maxStreams: number;
  /** Events a WatchEvents consumer may fall behind before its stream is ended. */
  maxStreamBacklog: number;
  /** Bearer tokens accepted by the API; empty: no authentication. */
  tokens: string[];
  /** With tokens set: what answers without one ('health', 'reflection', 'metrics'). */
  publicEndpoints: PublicEndpoint[];
  /** Certificate and key (PEM) to serve TLS with; unset: cleartext. */
  tls: { cert: Buffer; key: Buffer } | undefined;
  log: LogConfig;
}

/** Seed nodes of a Redis Cluster (any of its nodes; the rest are found from them) and what
 * every node is reached with: the seeds' own scheme and userinfo, the same on each. */
export interface RedisClusterTarget {
  nodes: { host: string; port: number }[];
  tls: boolean;
  username: string | undefined;
  password: string | undefined;
}

export type PublicEndpoint = 'health' | 'reflection' | 'metrics';
export const PUBLIC_ENDPOINTS: readonly PublicEndpoint[] = ['health', 'reflection', 'metrics'];

export const LOG_LEVELS = ['silent', 'fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;
export interface LogConfig {
  level: (typeof LOG_LEVELS)[number];
  /** json: one JSON object per line (pino); text: the same, for a person at a terminal. */
  format: 'json' | 'text';
}

/** Logs of a logger made without a loaded configuration: on, unless TASKWIRE_LOG=silent. */
export function defaultLogConfig(env: NodeJS.ProcessEnv = process.env): LogConfig {
  return { level: env[SETTINGS.log.env] === 'silent' ? 'silent' : 'info', format: 'json' };
}

/** What a client calls when its options do not say: TASKWIRE_SERVER and TASKWIRE_TOKEN. */
export function clientDefaults(env: NodeJS.ProcessEnv = process.env): { server: string; token: string | undefined } {
  return { server: env[CLIENT_SETTINGS.server.env] ?? 'http://127.0.0.1:50051', token: env[CLIENT_SETTINGS.token.env] };
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export type Flags = Record<string, string | boolean | undefined>;

interface Option {
  flag: string;
  env: string;
}

/**
 * Every setting a process reads, by its flag (`--flag`) and environment variable. The parser
 * below reads each one through this table, and docs/configuration.md lists each one
 * (test/configDocs.test.ts checks both, and that `taskwire --help` names them).
 */
export const SETTINGS = {
  redis: { flag: 'redis', env: 'REDIS_URL' },
  redisCluster: { flag: 'redis-cluster', env: 'REDIS_CLUSTER_NODES' },
  host: { flag: 'host', env: 'TASKWIRE_HOST' },
  port: { flag: 'port', env: 'TASKWIRE_PORT' },
  concurrency: { flag: 'concurrency', env: 'TASKWIRE_CONCURRENCY' },
  queues: { flag: 'queues', env: 'TASKWIRE_QUEUES' },
  queuePartitions: { flag: 'queue-partitions', env: 'TASKWIRE_QUEUE_PARTITIONS' },
  tasks: { flag: 'tasks', env: 'TASKWIRE_TASKS' },
  name: { flag: 'name', env: 'TASKWIRE_WORKER_NAME' },
  lease: { flag: 'lease', env: 'TASKWIRE_LEASE' },
  grace: { flag: 'grace', env: 'TASKWIRE_SHUTDOWN_GRACE' },
  resultTtl: { flag: 'result-ttl', env: 'TASKWIRE_RESULT_TTL' },
  watchHeartbeat: { flag: 'watch-heartbeat', env: 'TASKWIRE_WATCH_HEARTBEAT' },
  eventLogCap: { flag: 'event-log-cap', env: 'TASKWIRE_EVENT_LOG_CAP' },
  maxPayload: { flag: 'max-payload', env: 'TASKWIRE_MAX_PAYLOAD' },
  maxRequest: { flag: 'max-request', env: 'TASKWIRE_MAX_REQUEST' },
  maxConnectionBuffer: { flag: 'max-connection-buffer', env: 'TASKWIRE_MAX_CONNECTION_BUFFER_BYTES' },
  maxWatchersPerConnection: { flag: 'max-watchers-per-connection', env: 'TASKWIRE_MAX_WATCHERS_PER_CONNECTION' },
  maxStreams: { flag: 'max-streams', env: 'TASKWIRE_MAX_STREAMS' },
  maxStreamBacklog: { flag: 'max-stream-backlog', env: 'TASKWIRE_MAX_STREAM_BACKLOG' },
  tokens: { flag: 'tokens', env: 'TASKWIRE_TOKENS' },
  tokensFile: { flag: 'tokens-file', env: 'TASKWIRE_TOKENS_FILE' },
  public: { flag: 'public', env: 'TASKWIRE_PUBLIC' },
  tlsCert: { flag: 'tls-cert', env: 'TASKWIRE_TLS_CERT' },
  tlsKey: { flag: 'tls-key', env: 'TASKWIRE_TLS_KEY' },
  log: { flag: 'log', env: 'TASKWIRE_LOG' },
  logFormat: { flag: 'log-format', env: 'TASKWIRE_LOG_FORMAT' },
  dataDir: { flag: 'data-dir', env: 'TASKWIRE_DATA_DIR' },
} as const satisfies Record<string, Option>;

/** What a client reads (the CLI's client commands, the TS client): `clientDefaults`. */
export const CLIENT_SETTINGS = {
  server: { flag: 'server', env: 'TASKWIRE_SERVER' },
  token: { env: 'TASKWIRE_TOKEN' },
} as const satisfies Record<string, { flag?: string; env: string }>;

function raw(flags: Flags, env: NodeJS.ProcessEnv, o: Option): string | undefined {
  const f = flags[o.flag];
  if (typeof f === 'string') return f;
  const e = env[o.env];
  return e === undefined || e === '' ? undefined : e;
}

function where(o: Option): string {
  return `--${o.flag} / ${o.env}`;
}

/** "500ms", "30s", "5m", "1h", "1d"; a bare number is seconds. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!m) return undefined;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] ?? 's']!;
  return Math.round(Number(m[1]) * unit);
}

function duration(flags: Flags, env: NodeJS.ProcessEnv, o: Option, fallback: number, min: number): number {
  const text = raw(flags, env, o);
  if (text === undefined) return fallback;
  const ms = parseDuration(text);
  if (ms === undefined || ms < min) {
    throw new ConfigError(`${where(o)} must be a duration of at least ${min}ms such as 30s, 500ms or 5m; got "${text}"`);
  }
  return ms;
}

function integer(flags: Flags, env: NodeJS.ProcessEnv, o: Option, fallback: number, min: number, max: number): number {
  const text = raw(flags, env, o);
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || n < min || n > max) {
    throw new ConfigError(`${where(o)} must be a whole number from ${min} to ${max}; got "${text}"`);
  }
  return n;
}

function readFileOption(flags: Flags, env: NodeJS.ProcessEnv, o: Option): Buffer | undefined {
  const path = raw(flags, env, o);
  if (path === undefined) return undefined;
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(`${where(o)}: cannot read ${path}: ${(err as Error).message}`);
  }
}

/** Tokens from TASKWIRE_TOKENS (comma-separated) and/or a file of one token per line ('#' comments). */
function loadTokens(flags: Flags, env: NodeJS.ProcessEnv): string[] {
  const fromEnv = (raw(flags, env, SETTINGS.tokens) ?? '').split(',');
  const file = readFileOption(flags, env, SETTINGS.tokensFile);
  const fromFile = file
    ? file
        .toString('utf8')
        .split(/\r?\n/)
        .filter((l) => !l.trim().startsWith('#'))
    : [];
  const tokens = [...new Set([...fromEnv, ...fromFile].map((t) => t.trim()).filter(Boolean))];
  const bad = tokens.find((t) => t.length < 16 || !/^[\x21-\x7e]+$/.test(t));
  if (bad !== undefined) {
    throw new ConfigError(
      `--tokens / TASKWIRE_TOKENS and --tokens-file / TASKWIRE_TOKENS_FILE: each token must be at least 16 printable characters without spaces; one is ${bad.length} long`,
    );
  }
  if (file && tokens.length === 0) {
    throw new ConfigError('--tokens-file / TASKWIRE_TOKENS_FILE names a file without any token; auth would refuse everything');
  }
  return tokens;
}

function loadTls(flags: Flags, env: NodeJS.ProcessEnv): Config['tls'] {
  const certOpt = SETTINGS.tlsCert;
  const keyOpt = SETTINGS.tlsKey;
  const cert = readFileOption(flags, env, certOpt);
  const key = readFileOption(flags, env, keyOpt);
  if (!cert && !key) return undefined;
  if (!cert || !key) throw new ConfigError(`TLS needs both ${where(certOpt)} and ${where(keyOpt)}`);
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new ConfigError(`${where(certOpt)} and ${where(keyOpt)} are not a PEM certificate and its key: ${(err as Error).message}`);
  }
  return { cert, key };
}

/** `default=8,emails=4`: the queues that are partitioned, and into how many partitions. */
function loadPartitions(flags: Flags, env: NodeJS.ProcessEnv): Record<string, number> {
  const o = SETTINGS.queuePartitions;
  const text = raw(flags, env, o);
  const counts: Record<string, number> = Object.create(null);
  if (text === undefined) return counts;
  for (const part of text.split(',').map((p) => p.trim())) {
    if (!part) continue;
    const m = /^([^=\s]+)\s*=\s*(\S+)$/.exec(part);
    const queue = m?.[1] ?? part;
    if (!m || !isValidQueueName(queue)) {
      throw new ConfigError(
        `${where(o)} must be a comma-separated list of queue=partitions such as default=8,emails=4 (queue names of letters, digits, '_', '.', '-'); "${part}" is not`,
      );
    }
    const n = Number(m[2]);
    if (!/^\d+$/.test(m[2]!) || n < 1 || n > MAX_PARTITIONS) {
      throw new ConfigError(`${where(o)}: queue "${queue}" must have a whole number of partitions from 1 to ${MAX_PARTITIONS}; got "${m[2]}"`);
    }
    if (counts[queue] !== undefined) throw new ConfigError(`${where(o)} names queue "${queue}" twice`);
    counts[queue] = n;
  }
  return counts;
}

/**
 * `host:port,host:port,…`, each optionally written as `redis://[user:password@]host:port` or
 * `rediss://…` (TLS). Every seed must say the same scheme and credentials: the cluster's
 * nodes are all reached alike.
 */
export function parseClusterNodes(text: string): RedisClusterTarget {
  const o = SETTINGS.redisCluster;
  const entries = text
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean);
  if (entries.length === 0) throw new ConfigError(`${where(o)} must name at least one node as host:port; got "${text}"`);
  const seen = new Set<string>();
  const nodes: RedisClusterTarget['nodes'] = [];
  for (const entry of entries) {
    const withScheme = /^[a-z]+:\/\//.test(entry) ? entry : `redis://${entry}`;
    let url: URL | undefined;
    try {
      url = new URL(withScheme);
    } catch {
      url = undefined;
    }
    const port = url ? Number(url.port) : Number.NaN;
    if (
      !url ||
      !/^rediss?:$/.test(url.protocol) ||
      !url.hostname ||
      !url.port ||
      !(port >= 1 && port <= 65535) ||
      (url.pathname !== '' && url.pathname !== '/')
    ) {
      throw new ConfigError(
        `${where(o)} must be a comma-separated list of host:port (or redis://[user:password@]host:port, rediss://… for TLS); "${entry}" is not one`,
      );
    }
    const scheme = `${url.protocol}${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
    seen.add(scheme);
    if (seen.size > 1)
      throw new ConfigError(`${where(o)}: every node must use the same scheme (redis:// or rediss://) and the same user and password`);
    nodes.push({ host: url.hostname.replace(/^\[|\]$/g, ''), port });
  }
  const first = new URL(/^[a-z]+:\/\//.test(entries[0]!) ? entries[0]! : `redis://${entries[0]}`);
  return {
    nodes,
    tls: first.protocol === 'rediss:',
    username: first.username ? decodeURIComponent(first.username) : undefined,
    password: first.password ? decodeURIComponent(first.password) : undefined,
  };
}

export const DEFAULT_TASKS_MODULE = fileURLToPath(new URL('./tasks/index.js', import.meta.url)).replace(
  /\.js$/,
  import.meta.url.endsWith('.ts') ? '.ts' : '.js',
);

export function loadConfig(flags: Flags = {}, env: NodeJS.ProcessEnv = process.env): Config {
  const redisUrl = raw(flags, env, SETTINGS.redis);
  if (redisUrl !== undefined && !/^(redis|rediss|unix):\/\//.test(redisUrl)) {
    throw new ConfigError(`--redis / REDIS_URL must look like redis://host:6379 or unix:///path; got "${redisUrl}"`);
  }
  const clusterText = raw(flags, env, SETTINGS.redisCluster);
  const redisCluster = clusterText === undefined ? undefined : parseClusterNodes(clusterText);
  if (redisCluster && redisUrl !== undefined) {
    throw new ConfigError(
      `${where(SETTINGS.redis)} and ${where(SETTINGS.redisCluster)} are both set: give one (a single Redis, or the nodes of a Redis Cluster)`,
    );
  }
  const queuesText = raw(flags, env, SETTINGS.queues) ?? DEFAULT_QUEUE;
  const queues = [
    ...new Set(
      queuesText
        .split(',')
        .map((q) => q.trim())
        .filter(Boolean),
    ),
  ];
  const bad = queues.find((q) => !isValidQueueName(q));
  if (queues.length === 0 || bad !== undefined) {
    throw new ConfigError(
      `--queues / TASKWIRE_QUEUES must be a comma-separated list of names of letters, digits, '_', '.', '-' (at most 64 each); got "${queuesText}"`,
    );
  }
  const cores = availableParallelism();
  const maxPayloadBytes = integer(flags, env, SETTINGS.maxPayload, 1 << 20, 1, 64 << 20);
  const requestOpt = SETTINGS.maxRequest;
  const maxRequestBytes = integer(flags, env, requestOpt, maxPayloadBytes + 64 * 1024, 1024, 128 << 20);
  if (maxRequestBytes < maxPayloadBytes) {
    throw new ConfigError(`${where(requestOpt)} (${maxRequestBytes}) must not be below --max-payload / TASKWIRE_MAX_PAYLOAD (${maxPayloadBytes})`);
  }
  const connectionBufferOpt = SETTINGS.maxConnectionBuffer;
  const maxConnectionBufferBytes = integer(flags, env, connectionBufferOpt, Math.max(64 << 20, maxRequestBytes), 1024, 1 << 30);
  if (maxConnectionBufferBytes < maxRequestBytes) {
    throw new ConfigError(
      `${where(connectionBufferOpt)} (${maxConnectionBufferBytes}) must not be below ${where(requestOpt)} (${maxRequestBytes}): one largest request must fit`,
    );
  }
  const publicOpt = SETTINGS.public;
  const publicText = raw(flags, env, publicOpt) ?? 'health';
  const publicEndpoints =
    publicText === 'none'
      ? []
      : [
          ...new Set(
            publicText
              .split(',')
              .map((p) => p.trim())
              .filter(Boolean),
          ),
        ];
  const badPublic = publicEndpoints.find((p) => !PUBLIC_ENDPOINTS.includes(p as PublicEndpoint));
  if (badPublic !== undefined) {
    throw new ConfigError(`${where(publicOpt)} must be 'none' or a comma-separated list of ${PUBLIC_ENDPOINTS.join(', ')}; got "${publicText}"`);
  }
  const levelOpt = SETTINGS.log;
  const level = raw(flags, env, levelOpt) ?? 'info';
  if (!LOG_LEVELS.includes(level as LogConfig['level'])) {
    throw new ConfigError(`${where(levelOpt)} must be one of ${LOG_LEVELS.join(', ')}; got "${level}"`);
  }
  const formatOpt = SETTINGS.logFormat;
  const format = raw(flags, env, formatOpt) ?? (process.stderr.isTTY ? 'text' : 'json');
  if (format !== 'json' && format !== 'text') {
    throw new ConfigError(`${where(formatOpt)} must be json or text; got "${format}"`);
  }
  return {
    redisUrl,
    redisCluster,
    host: raw(flags, env, SETTINGS.host) ?? '127.0.0.1',
    port: integer(flags, env, SETTINGS.port, 50051, 0, 65535),
    concurrency: integer(flags, env, SETTINGS.concurrency, cores, 1, 10_000),
    queues,
    queuePartitions: loadPartitions(flags, env),
    tasksModule: raw(flags, env, SETTINGS.tasks) ?? DEFAULT_TASKS_MODULE,
    workerName: raw(flags, env, SETTINGS.name) ?? `${hostname()}-${process.pid}-${Math.random().toString(36).slice(2, 6)}`,
    resultTtlMs: duration(flags, env, SETTINGS.resultTtl, 86_400_000, 1000),
    leaseMs: duration(flags, env, SETTINGS.lease, 20_000, 1000),
    shutdownGraceMs: duration(flags, env, SETTINGS.grace, 10_000, 0),
    watchHeartbeatMs: duration(flags, env, SETTINGS.watchHeartbeat, 5_000, 100),
    eventLogCap: integer(flags, env, SETTINGS.eventLogCap, 1000, 10, 1_000_000),
    maxPayloadBytes,
    dataDir: raw(flags, env, SETTINGS.dataDir) ?? '.taskwire',
    maxRequestBytes,
    maxConnectionBufferBytes,
    maxWatchersPerConnection: integer(flags, env, SETTINGS.maxWatchersPerConnection, 100, 1, 100_000),
    maxStreams: integer(flags, env, SETTINGS.maxStreams, 10_000, 1, 1_000_000),
    maxStreamBacklog: integer(flags, env, SETTINGS.maxStreamBacklog, 10_000, 1, 1_000_000),
    tokens: loadTokens(flags, env),
    publicEndpoints: publicEndpoints as PublicEndpoint[],
    tls: loadTls(flags, env),
    log: { level: level as LogConfig['level'], format },
  };
}
