/**
 * Optional bearer-token auth. With tokens configured, every call (and GET /metrics) needs
 * `authorization: Bearer <token>` naming one of them, except the endpoints configured as
 * public. A call without a valid token gets UNAUTHENTICATED with the same message whatever
 * was wrong, and nothing else: no details, no hint whether the id or the task exists.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
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
