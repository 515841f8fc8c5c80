/** A small leveled logger: one line per event, to stderr, with the process role. */
export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
  child(role: string): Logger;
}

export function createLogger(role: string, quiet = process.env.TASKWIRE_LOG === 'silent'): Logger {
  const line = (level: string, msg: string) => {
    if (!quiet) process.stderr.write(`${new Date().toISOString()} ${level} [${role}] ${msg}\n`);
  };
  return {
    info: (m) => line('info ', m),
    warn: (m) => line('warn ', m),
    error: (m) => line('error', m),
    child: (r) => createLogger(`${role}:${r}`, quiet),
  };
}
