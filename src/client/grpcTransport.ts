/**
 * A Connect `Transport` that speaks gRPC (application/grpc+proto, identity or gzip encoding)
 * straight on one node:http2 session. connect-node's createGrpcTransport spends most of its ~1 ms
 * of CPU per call in its universal-client layers (a pipe of async generators per direction,
 * a sentinel, header copies); this does the same exchange with a few event listeners.
 *
 * What a caller sees is Connect's: interceptors run (runUnaryCall / runStreamingCall), the
 * request headers, response checks, trailer status and error details are Connect's own
 * gRPC helpers, and node errors map to the same codes (connection refused → UNAVAILABLE,
 * RST_STREAM CANCEL → CANCELED, …). A call that ends early (abort, deadline, an error, a
 * reply it cannot read) resets its stream with CANCEL, so the server lets go of it.
 *
 * One file, past the usual size: a call's exchange (head, messages, trailer, how it ended) is
 * one class hierarchy whose states must be read together.
 */
import type * as http2 from 'node:http2';
import { constants } from 'node:http2';
import type { DescMessage, DescMethodStreaming, DescMethodUnary, MessageShape } from '@bufbuild/protobuf';
import {
  Code,
  ConnectError,
  createContextValues,
  type ContextValues,
  type Interceptor,
  type StreamRequest,
  type StreamResponse,
  type Transport,
  type UnaryRequest,
  type UnaryResponse,
} from '@connectrpc/connect';
import { createMethodSerializationLookup, createMethodUrl, type Serialization } from '@connectrpc/connect/protocol';
import { headerGrpcStatus, requestHeader, validateResponseWithCompression, validateTrailer } from '@connectrpc/connect/protocol-grpc';
import { gunzip, gzipEnvelope, GZIP } from '../grpc/compression.js';
import { COMPRESSED, envelope, EnvelopeReader, type Envelope } from '../grpc/envelope.js';
import { H2Session } from './h2Session.js';
import { runStreamingCall, runUnaryCall } from './runCall.js';

export interface TaskwireTransportOptions {
  /** e.g. http://127.0.0.1:50051 or https://… */
  baseUrl: string;
  interceptors?: Interceptor[];
  /** Passed to http2.connect: `ca` for a server's certificate, client certificates, … */
  nodeOptions?: http2.SecureClientSessionOptions;
  /** The largest message accepted from the server (default 4 MiB, as gRPC's). */
  readMaxBytes?: number;
  /** The largest message sent (default: no limit but the protocol's 4 GiB; servers have theirs). */
  writeMaxBytes?: number;
  /** A deadline for calls that set none. */
  defaultTimeoutMs?: number;
  /** Close the HTTP/2 session after this long without a call (default 15 minutes). */
  idleTimeoutMs?: number;
  /** Ping the server this often while a call is open (default 30 s)… */
  keepaliveMs?: number;
  /** …and end the session when a ping is not answered this soon (default 10 s). */
  keepaliveTimeoutMs?: number;
  /** Send messages of 1 KiB and more gzipped, and ask for replies so (default: no). */
  compress?: boolean;
}

export interface TaskwireTransport extends Transport {
  /** Close the HTTP/2 session (open calls finish; a later call connects again). */
  close(): void;
}

/** A method's URL and its messages' (size-checked) protobuf codecs; typed where it is used. */
interface Codec {
  url: string;
  path: string;
  input: Serialization<any>;
  output: Serialization<any>;
}

type Method = DescMethodUnary | DescMethodStreaming;
type HeaderInit = Parameters<Transport['unary']>[3];

const READ_MAX = 4 * 1024 * 1024;
const WRITE_MAX = 0xffffffff;
/** The encodings a reply may use: gzip, which validateResponseWithCompression only names (this
 * module decompresses). */
const ACCEPTED = [{ name: GZIP, compress: unusable, decompress: unusable }];
function unusable(): never {
  throw new Error('gzip is handled by grpc/compression.ts');
}
/** Received messages waiting for the reader beyond this many bytes pause the stream (and,
 * through HTTP/2 flow control, the server). */
const BACKLOG = 256 * 1024;

export function createTaskwireTransport(options: TaskwireTransportOptions): TaskwireTransport {
  const h2 = new H2Session(options.baseUrl, {
    nodeOptions: options.nodeOptions,
    idleTimeoutMs: options.idleTimeoutMs,
    keepaliveMs: options.keepaliveMs,
    keepaliveTimeoutMs: options.keepaliveTimeoutMs,
  });
  const limits = { readMaxBytes: options.readMaxBytes ?? READ_MAX, writeMaxBytes: options.writeMaxBytes ?? WRITE_MAX };
  const frame = options.compress ? gzipEnvelope : envelope;
  const interceptors = options.interceptors ?? [];
  const codecs = new WeakMap<Method, Codec>();

  const codecOf = (method: Method): Codec => {
    let c = codecs.get(method);
    if (!c) {
      const url = createMethodUrl(options.baseUrl, method);
      const s = createMethodSerializationLookup(method, undefined, undefined, limits);
      c = { url, path: new URL(url).pathname, input: s.getI(true), output: s.getO(true) };
      codecs.set(method, c);
    }
    return c;
  };
  const deadline = (timeoutMs: number | undefined) => (timeoutMs === undefined ? options.defaultTimeoutMs : timeoutMs <= 0 ? undefined : timeoutMs);

  /** The stream for a request, opened on the transport's session. */
  const open = (codec: Codec, url: string, header: Headers): http2.ClientHttp2Stream => {
    let path = codec.path;
    if (url !== codec.url) {
      // An interceptor changed the URL: it must stay on this server.
      const u = new URL(url);
      if (u.origin !== h2.authority) {
        throw new ConnectError(`cannot make a request to ${u.origin}: the http2 session is connected to ${h2.authority}`, Code.Internal);
      }
      path = u.pathname + u.search;
    }
    const h: http2.OutgoingHttpHeaders = { ':method': 'POST', ':path': path };
    header.forEach((v, k) => {
      h[k] = v;
    });
    try {
      return h2.request(h);
    } catch (err) {
      throw nodeError(err);
    }
  };

  /** What runUnaryCall and runStreamingCall take, but the message and how to send it. */
  const call = (
    method: Method,
    signal: AbortSignal | undefined,
    timeoutMs: number | undefined,
    header: HeaderInit,
    contextValues?: ContextValues,
  ) => {
    const codec = codecOf(method);
    timeoutMs = deadline(timeoutMs);
    const h = requestHeader(true, timeoutMs, header);
    if (options.compress) {
      h.set('grpc-encoding', GZIP);
      h.set('grpc-accept-encoding', GZIP);
    }
    const req = {
      service: method.parent,
      requestMethod: 'POST',
      url: codec.url,
      header: h,
      contextValues: contextValues ?? createContextValues(),
    };
    return { codec, interceptors, signal, timeoutMs, req };
  };

  return {
    close: () => h2.close(),

    unary(method, signal, timeoutMs, header, message, contextValues) {
      const { codec, req, ...run } = call(method, signal, timeoutMs, header, contextValues);
      return runUnaryCall({
        ...run,
        req: { ...req, stream: false, method, message },
        next: (req) =>
          new Promise((resolve, reject) => {
            if (req.signal.aborted) return reject(req.signal.reason);
            const body = frame(codec.input.serialize(req.message));
            const stream = open(codec, req.url, req.header);
            new UnaryExchange(stream, req, codec.output, limits.readMaxBytes, resolve, reject);
            stream.end(body);
          }),
      });
    },

    stream(method, signal, timeoutMs, header, input, contextValues) {
      const { codec, req, ...run } = call(method, signal, timeoutMs, header, contextValues);
      return runStreamingCall({
        ...run,
        req: { ...req, stream: true, method, message: input },
        next: (req) =>
          new Promise((resolve, reject) => {
            if (req.signal.aborted) return reject(req.signal.reason);
            const stream = open(codec, req.url, req.header);
            void new StreamExchange(stream, req, codec.output, limits.readMaxBytes, resolve, reject).send(codec.input, frame);
          }),
      });
    },
  };
}

/** A node error as Connect's node client reports it (connect-node's connectErrorFromNodeReason). */
function nodeError(reason: unknown): ConnectError {
  if (reason instanceof ConnectError) return reason;
  // A request queued while the session connected fails with the session's own error inside.
  const e = reason as { code?: string; cause?: unknown };
  if (e?.code === 'ERR_HTTP2_STREAM_CANCEL' && e.cause instanceof Error) reason = e.cause;
  const codes = new Set<string>();
  for (let r: unknown = reason; r instanceof Error && codes.size < 16; r = (r as { cause?: unknown }).cause) {
    const c = (r as { code?: unknown }).code;
    codes.add(typeof c === 'string' ? c : '');
    if (!('cause' in r)) break;
  }
  let code = Code.Internal;
  if (
    codes.has('ERR_STREAM_WRITE_AFTER_END') ||
    codes.has('ERR_STREAM_DESTROYED') ||
    codes.has('ERR_HTTP2_INVALID_STREAM') ||
    codes.has('ECONNRESET')
  ) {
    code = Code.Aborted;
  } else if (codes.has('ETIMEDOUT') || codes.has('ENOTFOUND') || codes.has('EAI_AGAIN') || codes.has('ECONNREFUSED')) {
    code = Code.Unavailable;
  }
  const ce = ConnectError.from(reason, code);
  if (ce !== reason) ce.cause = reason;
  return ce;
}

/** connect-node's codes for an HTTP/2 stream reset (NO_ERROR and STREAM_CLOSED are none). */
const RST_CODES = new Map<number, [name: string, code: Code]>();
for (const [code, names] of [
  [
    Code.Internal,
    ['PROTOCOL_ERROR', 'INTERNAL_ERROR', 'FLOW_CONTROL_ERROR', 'SETTINGS_TIMEOUT', 'FRAME_SIZE_ERROR', 'COMPRESSION_ERROR', 'CONNECT_ERROR'],
  ],
  [Code.Unavailable, ['REFUSED_STREAM']],
  [Code.Canceled, ['CANCEL']],
  [Code.ResourceExhausted, ['ENHANCE_YOUR_CALM']],
  [Code.PermissionDenied, ['INADEQUATE_SECURITY', 'HTTP_1_1_REQUIRED']],
] as const) {
  for (const name of names) RST_CODES.set(constants[`NGHTTP2_${name}`], [name, code]);
}

/** How a stream that closed before its response ended failed, as Connect's node client says. */
function closedEarly(stream: http2.ClientHttp2Stream): ConnectError {
  const rst = RST_CODES.get(stream.rstCode ?? 0);
  if (rst) return new ConnectError(`http/2 stream closed with error code ${rst[0]} (0x${stream.rstCode!.toString(16)})`, rst[1]);
  return ConnectError.from(Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }));
}

function webHeaders(h: http2.IncomingHttpHeaders, out = new Headers()): Headers {
  for (const k in h) {
    if (k.charCodeAt(0) === 58 /* : */) continue;
    const v = h[k];
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const e of v) out.append(k, e);
    else out.append(k, String(v));
  }
  return out;
}

/**
 * One call's HTTP/2 stream: the response head, its messages as they arrive, the trailer,
 * and how it ended. Subclasses say what a call does with them.
 */
abstract class Exchange<O extends DescMessage, Req extends UnaryRequest | StreamRequest, Res> {
  header = new Headers();
  readonly trailer = new Headers();
  protected foundStatus = false;
  protected headerError?: ConnectError;
  protected readonly envelopes: Envelope[] = [];
  private readonly reader: EnvelopeReader;
  /** The reply's messages may be gzipped (its grpc-encoding says so). */
  private gzipped = false;
  /** The response has ended (all of it read). */
  protected ended = false;
  /** The call is over for its caller: its result or error was handed over. */
  protected over = false;
  protected failed?: ConnectError;
  private readonly onAbort = () => this.fail(this.req.signal.reason, true);

  constructor(
    protected readonly stream: http2.ClientHttp2Stream,
    protected readonly req: Req,
    private readonly output: Serialization<MessageShape<O>>,
    private readonly readMaxBytes: number,
    protected readonly resolve: (res: Res) => void,
    protected readonly reject: (err: ConnectError) => void,
  ) {
    this.reader = new EnvelopeReader(readMaxBytes);
    req.signal.addEventListener('abort', this.onAbort);
    stream.on('response', (h) => {
      this.header = webHeaders(h);
      try {
        let compression: { name: string } | undefined;
        ({
          foundStatus: this.foundStatus,
          headerError: this.headerError,
          compression,
        } = validateResponseWithCompression(ACCEPTED, h[':status'] ?? 0, this.header));
        this.gzipped = compression?.name === GZIP;
      } catch (err) {
        return this.fail(err);
      }
      this.onHead();
    });
    stream.on('data', (chunk: Buffer) => {
      if (this.failed) return;
      const before = this.envelopes.length;
      try {
        this.reader.push(chunk, this.envelopes);
      } catch (err) {
        return this.fail(err);
      }
      if (this.envelopes.length > before) this.onMessages(before);
    });
    stream.on('trailers', (t) => webHeaders(t, this.trailer));
    stream.on('end', () => {
      // Without a status the stream may have been cut (the session closing ends it, then
      // closes it with its reset code): the close tells.
      if (this.foundStatus || this.trailer.has(headerGrpcStatus)) this.end();
    });
    stream.on('error', (err: Error & { code?: string }) => {
      // The server answered and closed while a request was still being written: its answer counts.
      if (stream.writableEnded && err.code === 'ERR_STREAM_WRITE_AFTER_END') return;
      this.fail(nodeError(err));
    });
    stream.on('close', () => {
      if (this.ended) return;
      if (stream.readableEnded && !RST_CODES.get(stream.rstCode ?? 0)) this.end();
      else this.fail(closedEarly(stream));
    });
  }

  private end(): void {
    if (this.failed) return;
    if (this.reader.pending > 0) return this.fail(new ConnectError('protocol error: incomplete envelope', Code.InvalidArgument));
    this.ended = true;
    this.onEnd();
  }

  /** The call has an error: reset the stream (CANCEL) if it is still open, and report it. */
  protected fail(reason: unknown, aborted = false): void {
    if (this.failed || this.over) return;
    this.failed = reason instanceof ConnectError ? reason : ConnectError.from(reason);
    if (!this.stream.closed && !this.stream.destroyed) this.stream.close(constants.NGHTTP2_CANCEL);
    this.onError(this.failed, aborted);
  }

  /** The caller has the call's outcome: aborting it now changes nothing. */
  protected finish(): void {
    this.over = true;
    this.req.signal.removeEventListener('abort', this.onAbort);
  }

  /** Parses one message, as Connect would: a compressed one only when the reply said it is gzip. */
  protected parse(env: Envelope): MessageShape<O> {
    if (env.flags & COMPRESSED) {
      if (!this.gzipped) throw new ConnectError('received compressed envelope, but do not know how to decompress', Code.Internal);
      return this.output.parse(gunzip(env.data, this.readMaxBytes));
    }
    return this.output.parse(env.data);
  }

  protected abstract onHead(): void;
  /** Envelopes from index `from` on are new. */
  protected abstract onMessages(from: number): void;
  protected abstract onEnd(): void;
  protected abstract onError(err: ConnectError, aborted: boolean): void;
}

class UnaryExchange<I extends DescMessage, O extends DescMessage> extends Exchange<O, UnaryRequest<I, O>, UnaryResponse<I, O>> {
  protected onHead(): void {}
  protected onMessages(): void {}

  /** Connect's checks, in Connect's order (protocol-grpc/transport.js). */
  protected onEnd(): void {
    this.finish();
    try {
      if (this.envelopes.length > 1) {
        this.parse(this.envelopes[0]!);
        throw new ConnectError('protocol error: received extra output message for unary method', Code.Unimplemented);
      }
      const message = this.envelopes.length ? this.parse(this.envelopes[0]!) : undefined;
      validateTrailer(this.trailer, this.header);
      if (message === undefined) {
        if (this.headerError) throw this.headerError;
        throw new ConnectError(
          'protocol error: missing output message for unary method',
          this.trailer.has(headerGrpcStatus) ? Code.Unimplemented : Code.Unknown,
        );
      }
      if (this.headerError) {
        throw new ConnectError('protocol error: received output message for unary method with error status', Code.Unknown);
      }
      this.resolve({
        stream: false,
        service: this.req.service,
        method: this.req.method,
        header: this.header,
        message,
        trailer: this.trailer,
      });
    } catch (err) {
      this.reject(ConnectError.from(err));
    }
  }

  protected onError(err: ConnectError): void {
    this.finish();
    this.reject(err);
  }
}

class StreamExchange<I extends DescMessage, O extends DescMessage>
  extends Exchange<O, StreamRequest<I, O>, StreamResponse<I, O>>
  implements AsyncIterator<MessageShape<O>>
{
  private responded = false;
  private backlog = 0;
  private waiting?: { resolve: (r: IteratorResult<MessageShape<O>>) => void; reject: (err: unknown) => void };

  /** Writes the request messages as the stream takes them, then ends the request. */
  async send(serialization: Serialization<MessageShape<I>>, frame: (data: Uint8Array) => Buffer): Promise<void> {
    const stream = this.stream;
    try {
      for await (const message of this.req.message) {
        if (this.failed || stream.destroyed) return;
        if (!stream.write(frame(serialization.serialize(message)))) {
          await new Promise<void>((resolve) => {
            const go = () => {
              stream.off('drain', go);
              stream.off('close', go);
              resolve();
            };
            stream.on('drain', go);
            stream.on('close', go);
          });
        }
      }
      if (!this.failed && !stream.destroyed) stream.end();
    } catch (err) {
      this.fail(nodeError(err));
    }
  }

  protected onHead(): void {
    if (this.headerError) return this.fail(this.headerError);
    this.responded = true;
    this.resolve({
      stream: true,
      service: this.req.service,
      method: this.req.method,
      header: this.header,
      trailer: this.trailer,
      message: { [Symbol.asyncIterator]: () => this },
    });
  }

  protected onMessages(from: number): void {
    for (let i = from; i < this.envelopes.length; i++) this.backlog += this.envelopes[i]!.data.byteLength;
    if (this.waiting) this.deliver();
    if (this.backlog > BACKLOG) this.stream.pause();
  }

  protected onEnd(): void {
    if (this.waiting) this.deliver();
  }

  protected onError(err: ConnectError, aborted: boolean): void {
    if (!this.responded) {
      this.finish();
      return this.reject(err);
    }
    // Messages received before a failure are still delivered; after an abort, none are.
    if (aborted) this.envelopes.length = 0;
    if (this.waiting) this.deliver();
  }

  next(): Promise<IteratorResult<MessageShape<O>>> {
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      if (this.envelopes.length || this.ended || this.failed) this.deliver();
    });
  }

  /** Answers the waiting reader: the next message, the end, or the error. */
  private deliver(): void {
    const w = this.waiting!;
    this.waiting = undefined;
    const env = this.envelopes.shift();
    try {
      if (env) {
        this.backlog -= env.data.byteLength;
        if (this.backlog <= BACKLOG && this.stream.isPaused()) this.stream.resume();
        return w.resolve({ done: false, value: this.parse(env) });
      }
      if (this.failed) {
        this.finish();
        return w.reject(this.failed);
      }
      if (!this.foundStatus) validateTrailer(this.trailer, this.header);
      this.finish();
      w.resolve({ done: true, value: undefined });
    } catch (err) {
      const e = ConnectError.from(err);
      this.fail(e);
      this.finish();
      w.reject(e);
    }
  }
}
