#!/usr/bin/env node
/** The `taskwire` command. */
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, type Flags } from '../config.js';
import { UsageError } from './usageError.js';

// The client commands (the client, Connect, protobuf, the generated code) load only when one
// runs: a worker never needs them, and loaded they cost it ~15 MiB of peak memory.
let client: typeof import('./clientCommands.js') | undefined;
const clientCommands = async () => (client ??= await import('./clientCommands.js'));
// Likewise the processes (the logger, the embedded redis-server) load only for dev, serve
// and worker: a client command starts with what it uses.
const processes = () => import('./processes.js');

const HELP = `taskwire — a task queue served over gRPC

Processes:
  taskwire dev                 API server + one worker (+ a private redis-server when REDIS_URL is unset)
  taskwire serve               the API server (gRPC, gRPC-Web, Connect on one port)
  taskwire worker              a worker

Client (talks to --server / TASKWIRE_SERVER, default http://127.0.0.1:50051):
  taskwire start NAME [--args JSON] [--kwargs JSON] [--exclusive KEY] [--queue Q]
                      [--countdown 10s] [--idempotency-key K] [--wait]
  taskwire status [ID] [--exclusive KEY] [--queue Q] [--json]
  taskwire watch  [ID] [--exclusive KEY] [--queue Q] [--json]   exit code: 0 SUCCESS, 1 FAILURE, 3 REVOKED
  taskwire cancel [ID] [--exclusive KEY] [--queue Q] [--terminate] [--reason TEXT]
  taskwire workflow STEP_JSON [--queue Q] [--exclusive KEY] [--idempotency-key K] [--wait]
                      e.g. '{"chain":{"steps":[{"task":{"name":"add","args":[2,2]}},{"task":{"name":"add","args":[4]}}]}}'
  Without an ID, status/watch/cancel act on the latest task started (for --exclusive KEY if given).
  taskwire schedule create ID (--every 10s | --cron '0 3 * * *') --task NAME [--args JSON] [--kwargs JSON]
                    [--queue Q] [--timezone TZ] [--overlap skip|allow] [--replace]
  taskwire schedule list | get ID | pause ID | resume ID | delete ID   [--json]

Settings (flag / environment variable, default):
  --redis / REDIS_URL                         (dev: a private redis-server)
  --redis-cluster / REDIS_CLUSTER_NODES       (none) host:port,… of a Redis Cluster, instead of --redis
  --host / TASKWIRE_HOST                      127.0.0.1 (0.0.0.0 or :: to accept other machines)
  --port / TASKWIRE_PORT                      50051
  --concurrency / TASKWIRE_CONCURRENCY        number of CPUs
  --queues / TASKWIRE_QUEUES                  default
  --queue-partitions / TASKWIRE_QUEUE_PARTITIONS   (none) partitioned queues, e.g. default=8,emails=4
  --tasks / TASKWIRE_TASKS                    the bundled example tasks
  --lease / TASKWIRE_LEASE                    20s   (a silent worker's tasks are taken over after ~1.25x)
  --grace / TASKWIRE_SHUTDOWN_GRACE           10s
  --result-ttl / TASKWIRE_RESULT_TTL          1d
  --watch-heartbeat / TASKWIRE_WATCH_HEARTBEAT 5s
  --event-log-cap / TASKWIRE_EVENT_LOG_CAP    1000
  --max-payload / TASKWIRE_MAX_PAYLOAD        1048576 bytes
  --data-dir / TASKWIRE_DATA_DIR              .taskwire
  --name / TASKWIRE_WORKER_NAME               host-pid-random
  --max-request / TASKWIRE_MAX_REQUEST        max-payload + 65536 bytes (largest request message)
  --max-connection-buffer / TASKWIRE_MAX_CONNECTION_BUFFER_BYTES   67108864 bytes (unfinished gRPC request bodies held per connection)
  --max-watchers-per-connection / TASKWIRE_MAX_WATCHERS_PER_CONNECTION   100
  --max-streams / TASKWIRE_MAX_STREAMS        10000 (open streams per API server)
  --max-stream-backlog / TASKWIRE_MAX_STREAM_BACKLOG
                                              10000 (events a WatchEvents consumer may fall behind)
  --tokens / TASKWIRE_TOKENS                  (none: no auth) comma-separated bearer tokens
  --tokens-file / TASKWIRE_TOKENS_FILE        a file of bearer tokens, one per line
  --public / TASKWIRE_PUBLIC                  health (with tokens: what needs none; health,reflection,metrics or none)
  --tls-cert / TASKWIRE_TLS_CERT              (cleartext) PEM certificate file; with --tls-key: serve TLS
  --tls-key / TASKWIRE_TLS_KEY                PEM private key file
  --log / TASKWIRE_LOG                        info (silent, error, warn, info, debug, trace)
  --log-format / TASKWIRE_LOG_FORMAT          json (text when stderr is a terminal)

Client settings: TASKWIRE_SERVER (http:// or https://), TASKWIRE_TOKEN (bearer token),
  NODE_EXTRA_CA_CERTS (a CA file to trust for https)
`;

const OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  redis: { type: 'string' },
  'redis-cluster': { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  concurrency: { type: 'string', short: 'c' },
  queues: { type: 'string', short: 'Q' },
  'queue-partitions': { type: 'string' },
  tasks: { type: 'string' },
  name: { type: 'string' },
  lease: { type: 'string' },
  grace: { type: 'string' },
  'result-ttl': { type: 'string' },
  'watch-heartbeat': { type: 'string' },
  'event-log-cap': { type: 'string' },
  'max-payload': { type: 'string' },
  'data-dir': { type: 'string' },
  'max-request': { type: 'string' },
  'max-connection-buffer': { type: 'string' },
  'max-watchers-per-connection': { type: 'string' },
  'max-streams': { type: 'string' },
  'max-stream-backlog': { type: 'string' },
  tokens: { type: 'string' },
  'tokens-file': { type: 'string' },
  public: { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  log: { type: 'string' },
  'log-format': { type: 'string' },
  server: { type: 'string' },
  args: { type: 'string' },
  kwargs: { type: 'string' },
  exclusive: { type: 'string' },
  queue: { type: 'string' },
  countdown: { type: 'string' },
  'idempotency-key': { type: 'string' },
  wait: { type: 'boolean' },
  json: { type: 'boolean' },
  terminate: { type: 'boolean' },
  reason: { type: 'string' },
  every: { type: 'string' },
  cron: { type: 'string' },
  task: { type: 'string' },
  timezone: { type: 'string' },
  overlap: { type: 'string' },
  replace: { type: 'boolean' },
} as const;

function parse(argv: string[]) {
  try {
    return parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n\n${HELP}`);
  }
}

async function main(argv: string[]): Promise<number> {
  const parsed = parse(argv);
  const [command, ...rest] = parsed.positionals;
  const flags = parsed.values as Flags;
  if (flags.help || !command) {
    process.stdout.write(HELP);
    return command || flags.help ? 0 : 2;
  }
  switch (command) {
    case 'dev':
      await (await processes()).dev(loadConfig(flags));
      return -1;
    case 'serve':
      await (await processes()).serve(loadConfig(flags));
      return -1;
    case 'worker':
      await (await processes()).worker(loadConfig(flags));
      return -1;
    case 'start':
      return (await clientCommands()).startCommand(rest, flags);
    case 'status':
      return (await clientCommands()).statusCommand(rest, flags);
    case 'watch':
      return (await clientCommands()).watchCommand(rest, flags);
    case 'cancel':
      return (await clientCommands()).cancelCommand(rest, flags);
    case 'workflow':
      return (await clientCommands()).workflowCommand(rest, flags);
    case 'schedule':
      return (await clientCommands()).scheduleCommand(rest, flags);
    default:
      throw new UsageError(`unknown command "${command}"\n\n${HELP}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    const rpcError = client?.rpcErrorText(err);
    if (rpcError !== undefined) {
      process.stderr.write(rpcError);
      process.exitCode = 2;
    } else if (err instanceof UsageError || err instanceof ConfigError) {
      process.stderr.write(`taskwire: ${err.message}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`taskwire: ${(err as Error).message}\n`);
      process.exitCode = 1;
    }
  },
);
