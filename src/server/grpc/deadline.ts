/**
 * Deadlines a timer cannot hold. Node's timers take at most 2^31 − 1 ms (about 24.8
 * days); a longer delay fires at once, so a client that asks for 30 days (grpcio sends
 * "2592000S" or "720H") would see DEADLINE_EXCEEDED in a few milliseconds. Such a deadline
 * is further away than any call lasts: it is treated as no deadline, on every protocol.
 */
import type http from 'node:http';
import type http2 from 'node:http2';
import { parseTimeout as parseConnectTimeout } from '@connectrpc/connect/protocol-connect';
import { parseTimeout as parseGrpcTimeout } from '@connectrpc/connect/protocol-grpc';

/** The longest delay a Node timer keeps. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A call's timeout, or undefined when it is too far away to be a deadline. */
export function holdableTimeout(ms: number | undefined): number | undefined {
  return ms === undefined || ms > MAX_TIMER_MS ? undefined : ms;
}

type Handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void;

/**
 * Connect's handler arms a timer with the request's timeout header as given: a header
 * beyond what a timer holds is removed before it reads it, so the call has no deadline.
 * A header that is not a timeout stays, for Connect to refuse.
 */
export function withHoldableDeadlines(handler: Handler): Handler {
  return (req, res) => {
    const { headers } = req;
    const connect = headers['connect-timeout-ms'];
    if (typeof connect === 'string' && tooLong(parseConnectTimeout(connect, Number.MAX_SAFE_INTEGER))) delete headers['connect-timeout-ms'];
    const grpc = headers['grpc-timeout'];
    if (typeof grpc === 'string' && tooLong(parseGrpcTimeout(grpc, Number.MAX_SAFE_INTEGER))) delete headers['grpc-timeout'];
    handler(req, res);
  };
}

function tooLong(t: { timeoutMs?: number; error?: unknown }): boolean {
  return t.error === undefined && t.timeoutMs !== undefined && t.timeoutMs > MAX_TIMER_MS;
}
