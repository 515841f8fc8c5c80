/**
 * One gRPC call over raw HTTP/2 (node:http2, no gRPC library), for tests that must see the
 * bytes a client gets: frames, headers and trailers as sent.
 */
import http2 from 'node:http2';
import { gunzipSync, gzipSync } from 'node:zlib';

export interface RawReply {
  /** Response headers other than pseudo-headers, `date` and the grpc status ones. */
  headers: Record<string, string>;
  messages: Buffer[];
  /** Each message's flag byte (1: compressed). */
  flags: number[];
  /** The reply's grpc-encoding header, if any. */
  encoding?: string;
  status: string;
  message: string;
  /** grpc-status-details-bin (a google.rpc.Status with the details), as sent. */
  details?: string;
  /** The size of every header and trailer the reply carried, as sent. */
  headerBytes: number;
}

export interface RawCallOptions {
  /** Compress each request message with gzip (grpc-encoding: gzip). */
  gzip?: boolean;
  headers?: http2.OutgoingHttpHeaders;
  /** Resolve once this many messages have arrived, cancelling the call. */
  until?: number;
  /** Told when the first message arrives. */
  onFirst?: () => void;
}

/** Call a TaskService method on `session`; `body` is the request's messages, each as its bytes. */
export function rawGrpcCall(
  session: http2.ClientHttp2Session,
  method: string,
  body: Uint8Array | Uint8Array[],
  options: RawCallOptions = {},
): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const req = session.request({
      ':method': 'POST',
      ':path': `/taskwire.v1.TaskService/${method}`,
      'content-type': 'application/grpc',
      te: 'trailers',
      ...(options.gzip ? { 'grpc-encoding': 'gzip' } : {}),
      ...options.headers,
    });
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    let headerBytes = 0;
    const size = (h: http2.IncomingHttpHeaders) => {
      for (const [k, v] of Object.entries(h)) headerBytes += k.length + String(v).length;
    };
    let data = Buffer.alloc(0);
    const reply = (): RawReply => {
      const all = { ...headers, ...trailers };
      const plain: Record<string, string> = {};
      for (const [k, v] of Object.entries(headers)) if (!/^(:|date$|grpc-(encoding|status|message))/.test(k)) plain[k] = String(v);
      return {
        headers: plain,
        messages: unframe(data),
        flags: frameFlags(data),
        encoding: headers['grpc-encoding'] as string | undefined,
        status: String(all['grpc-status']),
        message: String(all['grpc-message'] ?? ''),
        details: all['grpc-status-details-bin'] as string | undefined,
        headerBytes,
      };
    };
    req.on('response', (h) => {
      size(h);
      headers = h;
    });
    req.on('trailers', (t) => {
      size(t);
      trailers = t;
    });
    req.on('data', (d: Buffer) => {
      data = Buffer.concat([data, d]);
      if (options.onFirst && unframe(data).length > 0) {
        options.onFirst();
        options.onFirst = undefined;
      }
      if (options.until !== undefined && unframe(data).length >= options.until) {
        resolve(reply());
        req.close(http2.constants.NGHTTP2_CANCEL);
      }
    });
    req.on('error', reject);
    req.on('end', () => resolve(reply()));
    const messages = Array.isArray(body) ? body : [body];
    for (const m of messages) req.write(options.gzip ? frame(gzipSync(m), 1) : frame(m, 0));
    req.end();
  });
}

/** A gRPC length-prefixed message: flag (1 = compressed), length, bytes. */
export function frame(bytes: Uint8Array, flag: number): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flag;
  head.writeUInt32BE(bytes.length, 1);
  return Buffer.concat([head, bytes]);
}

/** The whole messages in `data` (a partial last one is left out), gunzipped where flagged. */
export function unframe(data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at + 5 <= data.length; ) {
    const length = data.readUInt32BE(at + 1);
    if (at + 5 + length > data.length) break;
    const bytes = data.subarray(at + 5, at + 5 + length);
    out.push(data[at] === 1 ? gunzipSync(bytes) : bytes);
    at += 5 + length;
  }
  return out;
}

/** The flag byte of each whole message in `data`. */
function frameFlags(data: Buffer): number[] {
  const out: number[] = [];
  for (let at = 0; at + 5 <= data.length; at += 5 + data.readUInt32BE(at + 1)) {
    if (at + 5 + data.readUInt32BE(at + 1) > data.length) break;
    out.push(data[at]!);
  }
  return out;
}
