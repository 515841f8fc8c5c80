/**
 * One HTTP/2 session to a server, for a transport: connected on the first call, replaced
 * when it closes, fails or is told GOAWAY (its open streams finish on it). It keeps the
 * process alive only while a call is open on it, so a CLI exits once its work is done, and
 * closes after a long idle spell. While a call is open it pings the server; a server that
 * does not answer in time (a connection dropped without a FIN or RST) ends the session, so
 * its calls fail (and a watch resumes elsewhere) instead of hanging.
 */
import * as http2 from 'node:http2';

export interface H2SessionOptions {
  /** For https: the CA to trust (`ca`), client certificates, … (passed to http2.connect). */
  nodeOptions?: http2.SecureClientSessionOptions;
  /** Close the session after this long without a call (default 15 minutes). */
  idleTimeoutMs?: number;
  /** Ping the server this often while a call is open (default 30 s). */
  keepaliveMs?: number;
  /** End the session when a ping is not answered this soon (default 10 s). */
  keepaliveTimeoutMs?: number;
}

const MAX_STREAMS = 2 ** 30 - 1;

class Connection {
  open = 0;
  requests = 0;
  /** No new streams go here; it closes when its last stream has. */
  private retired = false;
  private idleSince = 0;
  private idleTimer?: NodeJS.Timeout;
  private pinger?: NodeJS.Timeout;

  constructor(
    readonly session: http2.ClientHttp2Session,
    private readonly idleTimeoutMs: number,
    private readonly keepalive: { everyMs: number; timeoutMs: number },
    private readonly gone: (c: Connection) => void,
  ) {
    session.on('connect', (_s, socket) => (socket as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true));
    // The error also reaches every stream open on the session: each call reports its own.
    session.on('error', () => gone(this));
    // node:http2 keeps an idle session that was told GOAWAY open (and with it the socket,
    // which holds up a server's graceful shutdown): it is closed here.
    session.on('goaway', () => this.retire());
    session.on('close', () => {
      clearTimeout(this.idleTimer);
      clearInterval(this.pinger);
      gone(this);
    });
  }

  opened(stream: http2.ClientHttp2Stream): void {
    if (this.open++ === 0) {
      this.session.ref();
      this.pinger = setInterval(() => this.ping(), this.keepalive.everyMs).unref();
    }
    stream.once('close', () => {
      if (--this.open > 0) return;
      clearInterval(this.pinger);
      if (this.retired) return void this.session.destroy();
      this.session.unref();
      this.idleSince = Date.now();
      if (!this.idleTimer) this.armIdle(this.idleTimeoutMs);
    });
  }

  /** Takes no more streams; closes now if none is open, else when the last one closes. */
  retire(): void {
    this.gone(this);
    this.retired = true;
    if (this.open === 0 && !this.session.destroyed) this.session.destroy();
  }

  private ping(): void {
    if (this.session.destroyed || this.session.connecting) return;
    const timeout = setTimeout(() => {
      const err = new Error(`the server did not answer a keepalive ping in ${this.keepalive.timeoutMs} ms; the connection is presumed dead`);
      this.session.destroy(Object.assign(err, { code: 'ETIMEDOUT' }));
    }, this.keepalive.timeoutMs).unref();
    try {
      if (!this.session.ping(() => clearTimeout(timeout))) clearTimeout(timeout);
    } catch {
      clearTimeout(timeout);
    }
  }

  /** One timer per idle spell at most, not one per call. */
  private armIdle(ms: number): void {
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.open > 0) return;
      const left = this.idleSince + this.idleTimeoutMs - Date.now();
      if (left > 0) return this.armIdle(left);
      this.retire();
    }, ms).unref();
  }
}

export class H2Session {
  readonly authority: string;
  private current?: Connection;

  constructor(
    baseUrl: string,
    private readonly options: H2SessionOptions = {},
  ) {
    this.authority = new URL(baseUrl).origin;
  }

  /** A new stream on the current session (connecting one if there is none). Requests made
   * while the session connects are queued by node:http2 and fail with it. */
  request(headers: http2.OutgoingHttpHeaders): http2.ClientHttp2Stream {
    for (let attempt = 0; ; attempt++) {
      const c = this.current ?? this.connect();
      try {
        const stream = c.session.request(headers);
        c.opened(stream);
        // Client stream ids are odd and 31 bits: well before they run out, move on.
        if (++c.requests === MAX_STREAMS) c.retire();
        return stream;
      } catch (err) {
        // Closed under us (GOAWAY, out of stream ids) before its event came: once more on a new one.
        if (attempt > 0 || !(c.session.closed || c.session.destroyed)) throw err;
        this.drop(c);
      }
    }
  }

  /** Close the session: open calls finish, a later call connects again. */
  close(): void {
    this.current?.retire();
  }

  private connect(): Connection {
    const session = http2.connect(this.authority, this.options.nodeOptions);
    const keepalive = { everyMs: this.options.keepaliveMs ?? 30_000, timeoutMs: this.options.keepaliveTimeoutMs ?? 10_000 };
    this.current = new Connection(session, this.options.idleTimeoutMs ?? 15 * 60_000, keepalive, (c) => this.drop(c));
    return this.current;
  }

  private drop(c: Connection): void {
    if (this.current === c) this.current = undefined;
  }
}
