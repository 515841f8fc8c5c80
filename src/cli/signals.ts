/** Graceful on the first SIGINT/SIGTERM, forceful on the second. */
export function onShutdown(graceful: () => Promise<void>, forceful: () => Promise<void>): void {
  let count = 0;
  const handler = (signal: NodeJS.Signals) => {
    count++;
    if (count === 1) {
      process.stderr.write(`\n${signal}: shutting down (again to force)\n`);
      graceful().then(
        () => process.exit(0),
        (err: Error) => {
          process.stderr.write(`shutdown failed: ${err.message}\n`);
          process.exit(1);
        },
      );
    } else if (count === 2) {
      process.stderr.write(`${signal}: forcing shutdown\n`);
      forceful().finally(() => process.exit(1));
    }
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}
