/** A command line the `taskwire` command cannot act on (exit code 2, with the help text). */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}
