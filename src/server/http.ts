/**
 * One port for every protocol: HTTP/2 cleartext (gRPC, and Connect/gRPC-Web over h2c) and
 * HTTP/1.1 (Connect with curl, gRPC-Web from a browser). Node's http2 server does not fall
 * back to HTTP/1.1 without TLS, so the first bytes of each connection choose: the HTTP/2
 * preface ("PRI * HTTP/2.0") goes to the h2 server, anything else to the h1 server.
 * With a certificate and key, one TLS server does both (ALPN picks h2 or http/1.1).
 */
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { grpcStatusFor, specEncodeGrpcMessage } from './grpc/status.js';

type Handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void;

export interface ListeningServer {
  port: number;
  close(): Promise<void>;
}

export interface TlsOptions {
  cert: Buffer;
  key: Buffer;
}

/** Rewrites the grpc-message trailer (the only place Connect's gRPC handler puts it). */
function withSpecGrpcMessage(handler: Handler): Handler {
  return (req, res) => {
    const addTrailers = res.addTrailers.bind(res) as (headers: http.OutgoingHttpHeaders) => void;
    res.addTrailers = (headers: http.OutgoingHttpHeaders) => {
      const message = headers['grpc-message'];
      if (typeof message === 'string') {
        const status = grpcStatusFor(headers['grpc-status'] as string | undefined, message);
        headers = { ...headers, ...(status && { 'grpc-status': status }), 'grpc-message': specEncodeGrpcMessage(message) };
      }
      addTrailers(headers);
    };
    handler(req, res);
  };
}

/** Takes an HTTP/2 stream before the request handler sees it (true), or leaves it (false). */
export type StreamClaim = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => boolean;

/** A connection must finish its TLS handshake and HTTP/2 preface (or HTTP/1.1 request
 * head) this soon, or it is closed: idle sockets cannot pile up against the fd limit. */
const HANDSHAKE_MS = 5_000;
/** A connection with no frames in either direction (no stream open, no ping) for this
 * long is closed; watch streams send heartbeats, so an open watch is never idle. */
const IDLE_MS = 5 * 60_000;
/** Each session is pinged this often; one that does not answer in PING_TIMEOUT_MS is gone. */
const PING_EVERY_MS = 60_000;
const PING_TIMEOUT_MS = 20_000;

export function listen(
  handler: Handler,
  host: string,
  port: number,
  tls?: TlsOptions,
  claim?: StreamClaim,
  onSessionError?: (err: Error) => void,
): Promise<ListeningServer> {
  handler = withSpecGrpcMessage(handler);
  const h2Handler = handler as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void;
  const h2 = tls ? http2.createSecureServer({ ...tls, allowHTTP1: true, handshakeTimeout: HANDSHAKE_MS }, h2Handler) : http2.createServer(h2Handler);
  h2.setTimeout(IDLE_MS);
  if (claim) {
    // Node's compatibility layer (the request handler) is a 'stream' listener that wraps
    // every stream in request/response objects; a stream claimed here never reaches it.
    const emit = h2.emit.bind(h2) as (event: string | symbol, ...args: unknown[]) => boolean;
    h2.emit = ((event: string | symbol, ...args: unknown[]) =>
      (event === 'stream' && claim(args[0] as http2.ServerHttp2Stream, args[1] as http2.IncomingHttpHeaders)) ||
      emit(event, ...args)) as typeof h2.emit;
  }
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  /** The raw socket being handed to the HTTP/2 server (its 'session' follows at once). */
  let handing: net.Socket | undefined;
  h2.on('session', (s) => {
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
    const socket = handing;
    if (socket) s.once('remoteSettings', () => handshaken(socket));
  });
  const pinger = setInterval(() => {
    for (const s of sessions) {
      if (s.closed || s.destroyed) continue;
      const gone = setTimeout(() => s.destroy(), PING_TIMEOUT_MS);
      gone.unref();
      try {
        s.ping(() => clearTimeout(gone));
      } catch {
        clearTimeout(gone);
      }
    }
  }, PING_EVERY_MS);
  pinger.unref();
  const handshakes = new WeakMap<net.Socket, NodeJS.Timeout>();
  const handshaken = (socket: net.Socket) => {
    clearTimeout(handshakes.get(socket));
    handshakes.delete(socket);
  };
  if (onSessionError) h2.on('sessionError', onSessionError);
  const track = (socket: net.Socket) => {
    // As Node's own HTTP servers do: small RPC frames leave at once (no Nagle), which the
    // raw socket the protocol sniffing accepts would not otherwise get.
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  };

  let server: net.Server;
  if (tls) {
    server = h2;
    h2.on('connection', track);
  } else {
    const h1 = http.createServer(handler as http.RequestListener);
    h1.on('request', (req: http.IncomingMessage) => handshaken(req.socket));
    server = net.createServer((socket) => {
      track(socket);
      const timer = setTimeout(() => socket.destroy(), HANDSHAKE_MS);
      timer.unref();
      handshakes.set(socket, timer);
      socket.once('close', () => handshaken(socket));
      socket.once('data', (first) => {
        socket.pause();
        socket.unshift(first);
        const h2Bound = first.subarray(0, 3).toString('latin1') === 'PRI';
        handing = h2Bound ? socket : undefined;
        (h2Bound ? h2 : h1).emit('connection', socket);
        handing = undefined;
        process.nextTick(() => socket.resume());
      });
    });
  }

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const address = server.address() as net.AddressInfo;
      resolve({
        port: address.port,
        close: () =>
          new Promise<void>((done) => {
            clearInterval(pinger);
            server.close(() => done());
            for (const s of sessions) s.close();
            // Streams still open (watchers) end now; their clients resume elsewhere.
            setTimeout(() => {
              for (const s of sockets) s.destroy();
            }, 100).unref();
          }),
      });
    });
  });
}
