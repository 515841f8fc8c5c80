/**
 * Optional bearer-token auth. With tokens configured, every call (and GET /metrics) needs
 * `authorization: Bearer <token>` naming one of them, except the endpoints configured as
 * public. A call without a valid token gets UNAUTHENTICATED with the same message whatever
 * was wrong, and nothing else: no details, no hint whether the id or the task exists.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import { constants, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import { errorTrailers } from './grpc/status.js';
import type { PublicEndpoint } from '../config.js';

const SERVICES: Record<Exclude<PublicEndpoint, 'metrics'>, string[]> = {
  health: ['grpc.health.v1.Health'],
  reflection: ['grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection'],
};

const digest = (s: string) => createHash('sha256').update(s).digest();

export class TokenAuth {
  private readonly digests: Buffer[];
  private readonly publicServices: Set<string>;

  constructor(
    tokens: readonly string[],
    private readonly publicEndpoints: readonly PublicEndpoint[],
  ) {
    this.digests = tokens.map(digest);
    this.publicServices = new Set(publicEndpoints.flatMap((p) => (p === 'metrics' ? [] : SERVICES[p])));
  }

  get enabled(): boolean {
    return this.digests.length > 0;
  }

  isPublic(endpoint: PublicEndpoint): boolean {
    return !this.enabled || this.publicEndpoints.includes(endpoint);
  }

  /** Whether an Authorization header value carries a valid token (compared in constant time). */
  allows(authorization: string | null | undefined): boolean {
    if (!this.enabled) return true;
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? '');
    if (!m) return false;
    const given = digest(m[1]!);
    let ok = false;
    for (const d of this.digests) ok = timingSafeEqual(d, given) || ok;
    return ok;
  }

  /**
   * Whether a call to this path (`/<service>/<method>`) may go on, from its headers alone:
   * a public service, or a valid token. Checked before the request's body is read.
   */
  allowsCall(path: string, authorization: string | null | undefined): boolean {
    if (!this.enabled) return true;
    return this.publicServices.has(path.split('/')[1] ?? '') || this.allows(authorization);
  }

  static refusal(): ConnectError {
    return new ConnectError('this server requires a valid bearer token (authorization: Bearer <token>)', Code.Unauthenticated);
  }

  interceptor(): Interceptor {
    if (!this.enabled) return (next) => next;
    return (next) => async (req) => {
      if (!this.publicServices.has(req.service.typeName) && !this.allows(req.header.get('authorization'))) {
        throw TokenAuth.refusal();
      }
      return next(req);
    };
  }
}

type NodeHandler = (req: http.IncomingMessage | Http2ServerRequest, res: http.ServerResponse | Http2ServerResponse) => void;

/**
 * Refuses a gRPC-Web or Connect call without a valid token from its headers, in its own
 * protocol, before its body is read (gRPC itself is refused so on the native path); the
 * rest of the body is not read: the HTTP/2 stream is reset, the HTTP/1.1 connection closed.
 */
export function withHeaderAuth<H extends NodeHandler>(next: H, auth: TokenAuth): H {
  if (!auth.enabled) return next;
  return ((req, res) => {
    const type = String(req.headers['content-type'] ?? '').toLowerCase();
    const path = (req.url ?? '').split('?')[0] ?? '';
    const reply = req.method === 'POST' && refusalFor(type);
    if (!reply || auth.allowsCall(path, req.headers.authorization)) return next(req, res);
    const { status, headers, body } = reply;
    const r = res as http.ServerResponse;
    if (!('stream' in req)) headers.connection = 'close';
    r.writeHead(status, headers);
    // Once the reply is written, the HTTP/2 stream is reset so its client stops sending.
    if ('stream' in req) r.once('finish', () => req.stream.close(constants.NGHTTP2_NO_ERROR));
    r.end(body);
  }) as H;
}

function refusalFor(type: string): { status: number; headers: http.OutgoingHttpHeaders; body?: Buffer } | undefined {
  const error = TokenAuth.refusal();
  const json = { code: 'unauthenticated', message: error.rawMessage };
  if (type.startsWith('application/grpc-web')) {
    // A trailers-only reply: the status in the headers.
    return { status: 200, headers: { 'content-type': type, ...errorTrailers(error) } };
  }
  if (type.startsWith('application/connect+')) {
    // A stream's end: an end-of-stream envelope with the error.
    const data = Buffer.from(JSON.stringify({ error: json }));
    const head = Buffer.alloc(5);
    head[0] = 0b10;
    head.writeUInt32BE(data.length, 1);
    return { status: 200, headers: { 'content-type': type }, body: Buffer.concat([head, data]) };
  }
  if (type.startsWith('application/proto') || type.startsWith('application/json')) {
    return { status: 401, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify(json)) };
  }
  return undefined;
}
