/**
 * Structured logs (pino): one JSON object per line on stderr, with the process role and
 * whatever a child logger binds (task id, trace context). `TASKWIRE_LOG=silent` turns
 * them off; `TASKWIRE_LOG_FORMAT=text` prints the same lines for a person.
 */
import { destination as pinoDestination, pino, stdTimeFunctions, type DestinationStream, type Logger as Pino } from 'pino';
import { defaultLogConfig, type LogConfig } from './config.js';

export type LogFields = Record<string, string | number | boolean | undefined>;

export interface Logger {
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  debug(msg: string, fields?: LogFields): void;
  /** A logger for a part of the process: `api:watch`. */
  child(role: string): Logger;
  /** A logger whose every line carries `fields` (e.g. task_id, trace_id). */
  with(fields: LogFields): Logger;
}

/**
 * Synchronous writes to fd 2, so the last lines before an exit are not lost, with the lines
 * of one turn of the event loop written together: a busy worker logs a line per task, and a
 * write per line is a system call per task. An exit writes what is still held at once.
 */
function batched(stderr: DestinationStream): DestinationStream {
  let held: string[] = [];
  const flush = () => {
    if (held.length === 0) return;
    const text = held.length === 1 ? held[0]! : held.join('');
    held = [];
    stderr.write(text);
  };
  process.on('exit', flush);
  return {
    write(line: string) {
      if (held.push(line) === 1) setImmediate(flush);
    },
  };
}

function destination(format: LogConfig['format']): DestinationStream {
  const stderr = batched(pinoDestination({ fd: 2, sync: true }));
  if (format === 'json') return stderr;
  return {
    write(line: string) {
      const { time, level, role, msg, pid: _pid, ...rest } = JSON.parse(line) as Record<string, unknown>;
      const extra = Object.entries(rest)
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(' ');
      stderr.write(`${String(time)} ${String(level).padEnd(5)} [${String(role)}] ${String(msg)}${extra ? `  ${extra}` : ''}\n`);
    },
  };
}

function wrap(root: Pino, p: Pino, role: string): Logger {
  return {
    info: (msg, fields) => (fields ? p.info(fields, msg) : p.info(msg)),
    warn: (msg, fields) => (fields ? p.warn(fields, msg) : p.warn(msg)),
    error: (msg, fields) => (fields ? p.error(fields, msg) : p.error(msg)),
    debug: (msg, fields) => (fields ? p.debug(fields, msg) : p.debug(msg)),
    // From the root, so the line has one "role", not one per generation.
    child: (r) => wrap(root, root.child({ ...p.bindings(), role: `${role}:${r}` }), `${role}:${r}`),
    with: (fields) => wrap(root, p.child(fields), role),
  };
}

export function createLogger(role: string, config: LogConfig = defaultLogConfig()): Logger {
  const p = pino(
    {
      level: config.level,
      base: { pid: process.pid },
      timestamp: stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    config.level === 'silent' ? undefined : destination(config.format),
  );
  return wrap(p, p.child({ role }), role);
}
