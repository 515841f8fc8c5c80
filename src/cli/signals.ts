/**
 * Graceful on the first SIGINT/SIGTERM, forceful on the second. A graceful shutdown that
 * has not finished after `boundMs` (its writes wait on a Redis that is gone) turns forceful
 * by itself, and a forceful one that hangs as well ends the process: a signal is always obeyed.
 */
export function onShutdown(graceful: () => Promise<void>, forceful: () => Promise<void>, boundMs: number): void {
  let count = 0;
  const force = (why: string) => {
    process.stderr.write(`${why}: forcing shutdown\n`);
    setTimeout(() => {
      process.stderr.write('forced shutdown did not finish either; exiting\n');
      process.exit(1);
    }, boundMs);
    forceful().finally(() => process.exit(1));
  };
  const handler = (signal: NodeJS.Signals) => {
    count++;
    if (count === 1) {
      process.stderr.write(`\n${signal}: shutting down (again to force)\n`);
      const bound = setTimeout(() => {
        if (count === 1) {
          count = 2;
          force(`shutdown did not finish in ${Math.round(boundMs / 1000)} s (is Redis reachable?)`);
        }
      }, boundMs);
      graceful().then(
        () => process.exit(0),
        (err: Error) => {
          clearTimeout(bound);
          process.stderr.write(`shutdown failed: ${err.message}\n`);
          process.exit(1);
        },
      );
    } else if (count === 2) {
      force(signal);
    }
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}
