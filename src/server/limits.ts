/**
 * Limits on server streams: at most `perConnection` watches on one HTTP connection and
 * `perServer` streams of any kind on the whole server. A call over a limit is refused at
 * once with RESOURCE_EXHAUSTED and a message naming the limit and its setting.
 */
import { Code, ConnectError, createContextKey, type Interceptor } from '@connectrpc/connect';
import type http from 'node:http';
import type http2 from 'node:http2';
import { callEndOf, type EndListener } from './callEnd.js';

/** The HTTP connection a call came on (an HTTP/2 session or an HTTP/1.1 socket). */
export const CONNECTION = createContextKey<object | undefined>(undefined, { description: 'the HTTP connection' });

export function connectionOf(req: http.IncomingMessage | http2.Http2ServerRequest): object {
  return ('stream' in req && req.stream?.session) || req.socket;
}

export class StreamLimits {
  private openStreams = 0;
  private readonly perConnection = new WeakMap<object, number>();

  constructor(private readonly limits: { maxWatchersPerConnection: number; maxStreams: number }) {}

  get open(): number {
    return this.openStreams;
  }

  /** @internal a stream ended: its place on the server (and on its connection, for a watch) is free. */
  released(watchConnection: object | undefined): void {
    this.openStreams--;
    if (watchConnection) this.perConnection.set(watchConnection, (this.perConnection.get(watchConnection) ?? 1) - 1);
  }

  interceptor(): Interceptor {
    return (next) => async (req) => {
      if (!req.stream) return next(req);
      const watch = req.method.methodKind === 'server_streaming';
      const conn = req.contextValues.get(CONNECTION);
      if (this.openStreams >= this.limits.maxStreams) {
        throw new ConnectError(
          `this server has ${this.openStreams} streams open, its limit (TASKWIRE_MAX_STREAMS); try again later or use another server`,
          Code.ResourceExhausted,
        );
      }
      const onConn = conn ? (this.perConnection.get(conn) ?? 0) : 0;
      if (watch && conn && onConn >= this.limits.maxWatchersPerConnection) {
        throw new ConnectError(
          `this connection has ${onConn} watches open, the limit per connection (TASKWIRE_MAX_WATCHERS_PER_CONNECTION); close one or open another connection`,
          Code.ResourceExhausted,
        );
      }
      this.openStreams++;
      if (watch && conn) this.perConnection.set(conn, onConn + 1);
      // A call's end (callEnd.ts) comes for any reason (its last message sent, an error,
      // the client gone), so this one listener releases every stream. It is an object,
      // not a closure: one is held per open stream.
      const release = new Release(this, watch ? conn : undefined);
      callEndOf(req).add(release);
      try {
        return await next(req);
      } catch (err) {
        release.handleEvent();
        throw err;
      }
    };
  }
}

/** Gives back one stream's place, once. */
class Release implements EndListener {
  private done = false;

  constructor(
    private readonly limits: StreamLimits,
    private readonly watchConnection: object | undefined,
  ) {}

  handleEvent(): void {
    if (this.done) return;
    this.done = true;
    this.limits.released(this.watchConnection);
  }
}
