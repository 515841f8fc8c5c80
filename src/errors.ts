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
