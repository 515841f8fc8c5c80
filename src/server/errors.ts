/**
 * The one place domain errors become gRPC statuses. A raw Error never reaches Connect
 * (it would leak as UNKNOWN with its message); unexpected ones are logged here and sent
 * as INTERNAL without a stack.
 */
import { create, type DescMessage, type Message } from '@bufbuild/protobuf';
import { anyPack, AnySchema, type Any } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import { BadRequest_FieldViolationSchema, BadRequestSchema, ErrorInfoSchema } from '../../gen/google/rpc/error_details_pb.js';
import { TaskwireError, type ErrorKind } from '../errors.js';
import type { Logger } from '../log.js';
import { isConnectionError, isOutOfMemory, isPassingRefusal } from '../redis.js';

const CODES: Record<ErrorKind, Code> = {
  invalid: Code.InvalidArgument,
  not_found: Code.NotFound,
  exists: Code.AlreadyExists,
  too_large: Code.ResourceExhausted,
  out_of_range: Code.OutOfRange,
  unavailable: Code.Unavailable,
  deadline: Code.DeadlineExceeded,
  internal: Code.Internal,
};

export const ERROR_DOMAIN = 'taskwire.dev';

export function toConnectError(err: unknown, log?: Logger): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof TaskwireError) {
    const details = [];
    if (err.details.reason) {
      details.push({
        desc: ErrorInfoSchema,
        value: create(ErrorInfoSchema, { reason: err.details.reason, domain: ERROR_DOMAIN, metadata: err.details.metadata ?? {} }),
      });
    }
    if (err.details.violations?.length) {
      details.push({
        desc: BadRequestSchema,
        value: create(BadRequestSchema, {
          fieldViolations: err.details.violations.map((v) => create(BadRequest_FieldViolationSchema, v)),
        }),
      });
    }
    return new ConnectError(err.message, CODES[err.kind], undefined, details);
  }
  if (isOutOfMemory(err)) {
    return new ConnectError(
      'Redis is out of memory and refuses writes (maxmemory reached with the noeviction policy); free memory or raise maxmemory, then try again',
      Code.ResourceExhausted,
    );
  }
  if (isPassingRefusal(err)) {
    return new ConnectError('Redis refuses commands for now (a slot moving, a failover, a busy script); try again shortly', Code.Unavailable);
  }
  if (isConnectionError(err)) {
    return new ConnectError('Redis cannot be reached right now; try again shortly', Code.Unavailable);
  }
  log?.error(`unexpected error: ${(err as Error)?.stack ?? String(err)}`);
  return new ConnectError('internal error; the server log has the details', Code.Internal);
}

/** A ConnectError's details as google.protobuf.Any (for StartError, which carries them). */
export function detailsAsAny(err: ConnectError): Any[] {
  const out: Any[] = [];
  for (const d of err.details) {
    if ('desc' in d) out.push(anyPack(d.desc as DescMessage, d.value as Message));
    else out.push(create(AnySchema, { typeUrl: `type.googleapis.com/${d.type}`, value: d.value }));
  }
  return out;
}
