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
  const h2 = tls ? http2.createSecureServer({ ...tls, allowHTTP1: true }, h2Handler) : http2.createServer(h2Handler);
  if (claim) {
    // Node's compatibility layer (the request handler) is a 'stream' listener that wraps
    // every stream in request/response objects; a stream claimed here never reaches it.
    const emit = h2.emit.bind(h2) as (event: string | symbol, ...args: unknown[]) => boolean;
    h2.emit = ((event: string | symbol, ...args: unknown[]) =>
      (event === 'stream' && claim(args[0] as http2.ServerHttp2Stream, args[1] as http2.IncomingHttpHeaders)) || emit(event, ...args)) as typeof h2.emit;
  }
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on('session', (s) => {
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
  });
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
    server = net.createServer((socket) => {
      track(socket);
      socket.once('data', (first) => {
        socket.pause();
        socket.unshift(first);
        (first.subarray(0, 3).toString('latin1') === 'PRI' ? h2 : h1).emit('connection', socket);
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
