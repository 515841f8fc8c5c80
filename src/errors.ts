/**
 * Domain errors carry a kind; the RPC edge maps kinds to gRPC codes in one place
 * (server/errors.ts). Nothing below the edge knows about gRPC.
 */
export type ErrorKind =
  | 'invalid' // the caller sent something unusable
  | 'not_found' // no such task
  | 'exists' // an exclusive task is already running
  | 'too_large' // a payload over a limit
  | 'out_of_range' // a position past the end of what exists (a version not reached yet)
  | 'unavailable' // Redis cannot be reached
  | 'deadline' // the caller's deadline passed (or it cancelled) before the work was done
  | 'internal';

export interface FieldViolation {
  field: string;
  description: string;
}

export class TaskwireError extends Error {
  override readonly name = 'TaskwireError';
  constructor(
    readonly kind: ErrorKind,
    message: string,
    readonly details: {
      reason?: string;
      metadata?: Record<string, string>;
      violations?: FieldViolation[];
    } = {},
  ) {
    super(message);
  }
}

export function invalid(field: string, description: string): TaskwireError {
  return new TaskwireError('invalid', `${field}: ${description}`, {
    reason: 'INVALID_ARGUMENT',
    violations: [{ field, description }],
  });
}

export function notFound(message: string, metadata: Record<string, string> = {}): TaskwireError {
  return new TaskwireError('not_found', message, { reason: 'TASK_NOT_FOUND', metadata });
}

/** The most characters of a caller's input an error message quotes. */
export const QUOTE_MAX = 100;

/**
 * A caller's input (an id, a key, a name) as an error message quotes it: in double quotes,
 * escaped, and cut to its first QUOTE_MAX characters with its length when longer. A message
 * travels in a header (grpc-message): an input of kilobytes echoed whole would exceed a
 * client's header limit, and the client would see that failure instead of the real status.
 */
export function quote(input: string): string {
  if (input.length <= QUOTE_MAX) return JSON.stringify(input);
  let head = input.slice(0, QUOTE_MAX);
  // Never half of a surrogate pair.
  if (/[\uD800-\uDBFF]$/.test(head)) head = head.slice(0, -1);
  return `${JSON.stringify(head).slice(0, -1)}…" (${input.length} characters)`;
}
