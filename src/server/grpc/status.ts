/**
 * A call's gRPC status as HTTP/2 trailers: grpc-status, grpc-message and, for an error
 * with details, grpc-status-details-bin (a google.rpc.Status), built by Connect's own
 * encoder so that both paths send the same bytes.
 */
import type { OutgoingHttpHeaders } from 'node:http2';
import type { ConnectError } from '@connectrpc/connect';
import { setTrailerStatus } from '@connectrpc/connect/protocol-grpc';

export const OK_TRAILERS: OutgoingHttpHeaders = Object.freeze({ 'grpc-status': '0' });

/**
 * grpc-message encoded as the gRPC spec says: only '%' and bytes outside printable ASCII
 * are percent-encoded. Connect encodes it with encodeURIComponent (':' → %3A, ',' → %2C),
 * which @grpc/grpc-js decodes with decodeURI, so its users read "name%3A no task…".
 * Every decoder reads this form back to the same text.
 */
export function specEncodeGrpcMessage(value: string): string {
  let text: string;
  try {
    text = decodeURIComponent(value);
  } catch {
    return value;
  }
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** How Connect's binary reader names a request body that is not the method's message. */
export const PARSE_ERROR_PREFIX = 'parse binary: ';

/** How Connect's handler names a second message in the body of a call that takes one. */
const EXTRA_MESSAGE_PREFIX = 'protocol error: received extra input message';

/**
 * Connect's gRPC handler answers a request body that is not the method's message with
 * INTERNAL, and one with a second message with UNIMPLEMENTED; both are the caller's error,
 * INVALID_ARGUMENT, as the native path answers them.
 * `message` is grpc-message as Connect's handler encodes it.
 */
export function grpcStatusFor(status: string | undefined, message: string): string | undefined {
  if (status === '13' && message.startsWith(encodeURIComponent(PARSE_ERROR_PREFIX))) return '3';
  if (status === '12' && message.startsWith(encodeURIComponent(EXTRA_MESSAGE_PREFIX))) return '3';
  return status;
}

/** The trailers that end a call with this error (plus whatever the handler set). */
export function errorTrailers(error: ConnectError, extra?: Headers): OutgoingHttpHeaders {
  const out = plain(setTrailerStatus(new Headers(extra), error));
  out['grpc-message'] = specEncodeGrpcMessage(out['grpc-message'] as string);
  return out;
}

/** Web Headers as the header object Node's HTTP/2 API takes. */
export function plain(headers: Headers): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  headers.forEach((value, key) => {
    out[key] = value;
  });
  return out;
}
