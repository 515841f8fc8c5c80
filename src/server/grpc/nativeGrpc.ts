/**
 * The gRPC protocol served straight on Node's HTTP/2 streams, for the calls that carry a
 * task queue's traffic: unary and server-streaming methods, binary protobuf, identity or gzip
 * encoding. It runs the same service implementations and the same interceptors as
 * Connect's handler, with the same statuses, messages and error details on the wire; it
 * leaves out the layers of web Headers, linked AbortControllers and async-generator
 * pipelines that made Connect-node's handler cost ~1 ms of CPU and ~33 KiB of heap per
 * call on our machine (docs/performance.md).
 *
 * A call this path does not take — another protocol (Connect, gRPC-Web, JSON), a client- or
 * bidi-streaming method (reflection) — goes to Connect's handler unchanged: `claim` says no
 * and nothing has been read.
 *
 * Every gRPC call is first judged on its headers, before a byte of its body is read: one
 * without a valid token is refused UNAUTHENTICATED, one to a method no path serves
 * UNIMPLEMENTED. A body is read only as far as its one message; a second one is refused at
 * its first byte. What a connection's unfinished bodies hold is capped, so that many calls
 * that never end their bodies cannot fill the server's memory.
 *
 * One file, past the usual size: a call's life (headers, body, interceptors, messages,
 * trailers, cancellation) is one class whose states must be read together.
 */
import { constants, type Http2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { create, fromBinary, isMessage, toBinary, type DescMessage, type DescMethod, type DescService } from '@bufbuild/protobuf';
import {
  Code,
  ConnectError,
  createServiceImplSpec,
  type ContextValues,
  type HandlerContext,
  type Interceptor,
  type MethodImplSpec,
  type ServiceImpl,
} from '@connectrpc/connect';
import { parseTimeout } from '@connectrpc/connect/protocol-grpc';
import { CALL_END } from '../callEnd.js';
import { pullable, type Pullable, type PullSink } from '../pullable.js';
import { CallContext } from './callContext.js';
import { holdableTimeout } from './deadline.js';
import { gunzip, gzipEnvelope, GZIP } from '../../grpc/compression.js';
import { COMPRESSED, envelope, EnvelopeReader, type Envelope } from '../../grpc/envelope.js';
import { errorTrailers, OK_TRAILERS, PARSE_ERROR_PREFIX, plain } from './status.js';

export interface NativeGrpcOptions {
  /** The largest request message accepted (RESOURCE_EXHAUSTED above it), as Connect's readMaxBytes. */
  readMaxBytes: number;
  /** The interceptors Connect's handler runs, in the same order. */
  interceptors: Interceptor[];
  /** Per-call context values, as Connect's `contextValues` option gives them. */
  contextValues: (stream: ServerHttp2Stream) => ContextValues;
  /** Decides from a call's path and authorization header whether it may go on. */
  auth: { allowsCall(path: string, authorization: string | undefined): boolean };
  /** The refusal a call without a valid token gets. */
  refusal: () => ConnectError;
  /** The most bytes of request bodies held for the calls of one HTTP/2 connection. */
  maxConnectionBufferBytes: number;
}

type Served = MethodImplSpec & { kind: 'unary' | 'server_streaming' };

const CONTENT_TYPES = new Set(['application/grpc', 'application/grpc+proto']);
/** gRPC in any codec (not gRPC-Web, whose content type is application/grpc-web…). */
const GRPC = /^application\/grpc(\+[\w.-]+)?(;|$)/i;
/** How much of a path a message quotes. */
const QUOTE = 100;
const RESPONSE_CONTENT_TYPE = 'application/grpc+proto';
const ACCEPT_ENCODING = { 'grpc-accept-encoding': GZIP };

export class NativeGrpc {
  private readonly routes = new Map<string, Served>();
  /** Paths Connect's handler serves for gRPC (the methods this path does not take). */
  private readonly elsewhere = new Set<string>();
  private readonly buffers = new WeakMap<Http2Session, ConnectionBuffer>();

  constructor(private readonly options: NativeGrpcOptions) {}

  /** Serves the unary and server-streaming methods of a service with this implementation. */
  service<S extends DescService>(service: S, impl: ServiceImpl<S>): this {
    const spec = createServiceImplSpec(service, impl);
    for (const method of service.methods) {
      const m = spec.methods[method.localName]!;
      if (m.kind === 'unary' || m.kind === 'server_streaming') this.routes.set(`/${service.typeName}/${method.name}`, m);
    }
    return this;
  }

  /** Names a service whose methods Connect's handler serves (for gRPC too). */
  servedElsewhere(service: DescService): this {
    for (const method of service.methods) this.elsewhere.add(`/${service.typeName}/${method.name}`);
    return this;
  }

  /**
   * Takes the stream if it is a call this path serves, and serves it, or a gRPC call to be
   * refused from its headers, and refuses it; otherwise returns false.
   */
  claim(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): boolean {
    if (headers[':method'] !== 'POST' || !GRPC.test(headers['content-type'] ?? '')) return false;
    const path = headers[':path'] ?? '';
    if (!this.options.auth.allowsCall(path, single(headers.authorization))) {
      refuse(stream, this.options.refusal());
      return true;
    }
    const spec = this.routes.get(path);
    if (!spec) {
      if (this.elsewhere.has(path)) return false;
      refuse(stream, new ConnectError(`this server has no method ${quote(path)}`, Code.Unimplemented));
      return true;
    }
    if (!CONTENT_TYPES.has(headers['content-type'] ?? '')) return false;
    const encoding = single(headers['grpc-encoding']);
    if (encoding !== undefined && encoding !== 'identity' && encoding !== GZIP) {
      refuse(stream, new ConnectError(`unknown compression "${quote(encoding)}": supported encodings are ${GZIP}`, Code.Unimplemented));
      return true;
    }
    new Call(spec, stream, headers, this.options, this.bufferOf(stream.session), encoding === GZIP).start();
    return true;
  }

  private bufferOf(session: Http2Session | undefined): ConnectionBuffer {
    if (!session) return new ConnectionBuffer(this.options.maxConnectionBufferBytes);
    let b = this.buffers.get(session);
    if (!b) {
      b = new ConnectionBuffer(this.options.maxConnectionBufferBytes);
      this.buffers.set(session, b);
    }
    return b;
  }
}

/** The bytes of request bodies a connection's calls hold until their bodies end. */
class ConnectionBuffer {
  bytes = 0;

  constructor(readonly max: number) {}

  /** Takes n more bytes, or refuses them (RESOURCE_EXHAUSTED) if they pass the cap. */
  hold(n: number): void {
    if (this.bytes + n > this.max) {
      throw new ConnectError(
        `this connection's calls hold ${this.bytes} bytes of request bodies not yet ended; ${n} more would pass the limit per connection (TASKWIRE_MAX_CONNECTION_BUFFER_BYTES, ${this.max}); end each request body, or spread the calls over more connections`,
        Code.ResourceExhausted,
      );
    }
    this.bytes += n;
  }
}

/**
 * Answers a call from its headers, with a trailers-only reply, and reads none of its body:
 * the stream is reset (NO_ERROR) once the reply is written, so the client stops sending.
 */
function refuse(stream: ServerHttp2Stream, error: ConnectError): void {
  stream.on('error', ignore);
  if (stream.destroyed) return;
  stream.respond({ ':status': 200, 'content-type': RESPONSE_CONTENT_TYPE, ...ACCEPT_ENCODING, ...errorTrailers(error) }, { endStream: true });
  stream.close(constants.NGHTTP2_NO_ERROR);
}

function quote(text: string): string {
  return text.length > QUOTE ? `${text.slice(0, QUOTE)}…` : text;
}

type AnyFn = Parameters<Interceptor>[0];
type AnyRequest = Parameters<AnyFn>[0];

/** One call, from its request body to its trailers. */
class Call implements PullSink<unknown> {
  private readonly ctx: CallContext;
  /** The request's body, until it is read. */
  private reader?: EnvelopeReader;
  private messages: Envelope[] | undefined = [];
  /** A grpc-timeout header that is not one. */
  private readonly timeoutError?: ConnectError;
  private timer?: NodeJS.Timeout;
  /** The status was decided (sent, or the client is gone): nothing more is written. */
  private done = false;
  /** The request this call gave the interceptors. */
  private request?: object;
  /** A server stream's source (a watch pulls without promises; see pullable.ts). */
  private source?: Pullable<unknown>;
  /** The bytes of the body this call holds on its connection's buffer. */
  private held = 0;

  constructor(
    private readonly spec: Served,
    private readonly stream: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
    private readonly options: NativeGrpcOptions,
    private readonly buffer: ConnectionBuffer,
    /** The request is gzip-encoded: its messages may be compressed, and so is the reply. */
    private readonly gzip: boolean,
  ) {
    const timeout = parseTimeout(single(headers['grpc-timeout']) ?? null, Number.MAX_SAFE_INTEGER);
    this.timeoutError = timeout.error;
    this.ctx = new CallContext(spec.method, headers, stream, options.contextValues, timeout.error ? undefined : holdableTimeout(timeout.timeoutMs));
    this.reader = new EnvelopeReader(options.readMaxBytes);
  }

  start(): void {
    const { stream } = this;
    stream.on('data', (chunk: Buffer) => {
      if (this.done) return;
      try {
        this.buffer.hold(chunk.length);
        this.held += chunk.length;
        const reader = this.reader!;
        const messages = this.messages!;
        reader.push(chunk, messages);
        // Both kinds take one request message: the first byte of another is refused at once.
        if (messages.length > 1 || (messages.length === 1 && reader.midMessage)) throw this.extraMessage();
      } catch (err) {
        this.fail(err);
      }
    });
    stream.once('end', () => {
      stream.removeAllListeners('data');
      this.release();
      void this.run();
    });
    // A reset from the client (RST_STREAM with an error code) is an 'error' on the stream;
    // unheard, it would end the process. The 'close' that follows ends the call.
    stream.on('error', ignore);
    // The client reset the stream or went away: the handler's signal tells it to stop.
    // `on`, not `once`: it fires once anyway, and a once-wrapper is ~0.2 KiB per open stream.
    stream.on('close', () => {
      if (this.done) return;
      this.done = true;
      this.end(new ConnectError('the client cancelled the call', Code.Canceled));
    });
    // A deadline ends the call at once, whatever the handler is still doing.
    const ms = this.ctx.timeoutMs();
    if (ms !== undefined) {
      this.timer = setTimeout(() => this.fail(new ConnectError('the operation timed out', Code.DeadlineExceeded)), ms);
    }
  }

  private async run(): Promise<void> {
    const reader = this.reader!;
    this.reader = undefined;
    if (this.done) return;
    try {
      if (this.timeoutError) throw this.timeoutError;
      if (reader.midMessage) throw new ConnectError('protocol error: incomplete envelope', Code.InvalidArgument);
      const kind = this.spec.kind === 'unary' ? 'unary' : 'server-streaming';
      const [first, extra] = this.messages!;
      this.messages = undefined;
      if (!first) throw new ConnectError(`protocol error: missing input message for ${kind} method`, Code.Unimplemented);
      if (extra) throw this.extraMessage();
      let data = first.data;
      if (first.flags & COMPRESSED) {
        if (!this.gzip) throw new ConnectError('protocol error: a compressed message without a grpc-encoding header', Code.Internal);
        data = gunzip(data, this.options.readMaxBytes);
      }
      const input = parse(this.spec.method.input, data);
      if (this.spec.kind === 'unary') await this.unary(input);
      else this.serverStream(input);
    } catch (err) {
      this.fail(err);
    }
  }

  /** One reply message for the wire: gzipped (when large enough) if the request was. */
  private frame(data: Uint8Array): Buffer {
    return this.gzip ? gzipEnvelope(data) : envelope(data);
  }

  private extraMessage(): ConnectError {
    const kind = this.spec.kind === 'unary' ? 'unary' : 'server-streaming';
    return new ConnectError(`protocol error: received extra input message for ${kind} method`, Code.InvalidArgument);
  }

  /** The body is read (or will not be): its bytes leave the connection's buffer. */
  private release(): void {
    this.buffer.bytes -= this.held;
    this.held = 0;
  }

  private async unary(input: unknown): Promise<void> {
    const spec = this.spec as Extract<Served, { kind: 'unary' }>;
    const res = await this.invoke(false, input, async (req) =>
      this.response(false, output(spec.method, await spec.impl(req.message as never, this.contextFor(req)))),
    );
    if (this.done) return;
    this.finish(this.frame(toBinary(spec.method.output, res.message as never)));
  }

  /**
   * A stream may stay open for hours, by the thousand: it is driven by callbacks, not by a
   * suspended async function, and keeps only its iterator and the call.
   */
  private serverStream(input: unknown): void {
    const spec = this.spec as Extract<Served, { kind: 'server_streaming' }>;
    this.invoke(true, input, async (req) => {
      const first = await (req.message as AsyncIterable<unknown>)[Symbol.asyncIterator]().next();
      return this.response(true, spec.impl(first.value as never, this.contextFor(req)));
    }).then(
      (res) => {
        this.request = undefined;
        this.source = pullable((res.message as AsyncIterable<unknown>)[Symbol.asyncIterator]());
        this.pull();
      },
      (err) => this.fail(err),
    );
  }

  /** Asks the stream's source for its next message: see PullSink. */
  private pull(): void {
    const source = this.source!;
    if (this.done) source.return?.();
    else source.pull(this);
  }

  // PullSink: the source's next message, written; the next asked for once the stream can take it.
  result(r: IteratorResult<unknown>): void {
    if (this.done) return void this.source!.return?.();
    if (r.done) return this.finish();
    let more: boolean;
    try {
      more = this.write(this.frame(toBinary(this.spec.method.output, output(this.spec.method, r.value))));
    } catch (err) {
      this.source!.return?.();
      return this.fail(err);
    }
    if (more) this.pull();
    else this.afterDrain(() => this.pull());
  }

  error(err: unknown): void {
    this.fail(err);
  }

  /**
   * The interceptors around the implementation, with the request Connect would build. Its
   * header, signal and context values are the call context's, made when first read; its
   * CALL_END is the call context too, so a stream is told of its end without a signal.
   */
  private invoke(stream: boolean, input: unknown, impl: AnyFn): ReturnType<AnyFn> {
    const { ctx, spec } = this;
    const next = this.options.interceptors.reduceRight((n, i) => i(n), impl);
    const request = {
      stream,
      message: stream ? once(input) : input,
      method: spec.method,
      service: spec.method.parent,
      requestMethod: ctx.requestMethod,
      get url() {
        return ctx.url;
      },
      get signal() {
        return ctx.signal;
      },
      [CALL_END]: ctx,
      get header() {
        return ctx.requestHeader;
      },
      get contextValues() {
        return ctx.values;
      },
    };
    this.request = request;
    return next(request as AnyRequest);
  }

  /** The context the implementation gets: the call's own, unless an interceptor passed on a request of its own. */
  private contextFor(req: AnyRequest): HandlerContext {
    if (req === this.request) return this.ctx;
    const { ctx } = this;
    return {
      method: ctx.method,
      service: req.service,
      protocolName: ctx.protocolName,
      requestMethod: ctx.requestMethod,
      url: ctx.url,
      timeoutMs: () => ctx.timeoutMs(),
      responseHeader: ctx.responseHeader,
      responseTrailer: ctx.responseTrailer,
      requestHeader: req.header,
      signal: req.signal,
      values: req.contextValues,
    };
  }

  private response(stream: boolean, message: unknown): Awaited<ReturnType<AnyFn>> {
    const { ctx, spec } = this;
    return {
      stream,
      message,
      method: spec.method,
      service: spec.method.parent,
      get header() {
        return ctx.responseHeader;
      },
      get trailer() {
        return ctx.responseTrailer;
      },
    } as Awaited<ReturnType<AnyFn>>;
  }

  /** Writes one message, sending the response headers first; false when the stream wants a drain. */
  private write(data: Buffer): boolean {
    if (!this.stream.headersSent) this.respond();
    return this.stream.write(data);
  }

  private respond(): void {
    this.stream.respond(this.responseHeaders(), { waitForTrailers: true });
  }

  /** Ends the response: its trailers follow the last data frame. */
  private endWith(trailers: OutgoingHttpHeaders): void {
    this.stream.once('wantTrailers', () => this.stream.sendTrailers(trailers));
    this.stream.end();
  }

  /** Calls `next` once the stream drained, or closed (then the call is done). */
  private afterDrain(next: () => void): void {
    const go = () => {
      this.stream.off('drain', go);
      this.stream.off('close', go);
      next();
    };
    this.stream.on('drain', go);
    this.stream.on('close', go);
  }

  /** Ends the call with OK (after its last message, if given). */
  private finish(last?: Buffer): void {
    this.done = true;
    const extra = this.ctx.extraTrailers();
    if (!this.stream.destroyed) {
      if (last) this.write(last);
      else if (!this.stream.headersSent) this.respond();
      this.endWith(extra ? { ...OK_TRAILERS, ...plain(extra) } : OK_TRAILERS);
    }
    this.end();
  }

  /** Ends the call with an error status: in the trailers, or as a trailers-only response. */
  private fail(err: unknown): void {
    if (this.done) return;
    this.done = true;
    const error = err instanceof ConnectError ? err : new ConnectError('internal error', Code.Internal, undefined, undefined, err);
    const { stream } = this;
    if (!stream.destroyed) {
      const trailers = errorTrailers(error, this.ctx.extraTrailers());
      if (stream.headersSent) {
        this.endWith(trailers);
      } else {
        stream.respond({ ...this.responseHeaders(), ...trailers }, { endStream: true });
      }
      // The client is still sending a body this call will not read: it is told to stop.
      if (this.reader) stream.close(constants.NGHTTP2_NO_ERROR);
    }
    this.end(error);
  }

  private end(reason?: unknown): void {
    this.release();
    clearTimeout(this.timer);
    this.ctx.abort(reason);
  }

  private responseHeaders(): OutgoingHttpHeaders {
    const h: OutgoingHttpHeaders = { ':status': 200, 'content-type': RESPONSE_CONTENT_TYPE, ...ACCEPT_ENCODING, ...this.ctx.extraHeaders() };
    if (this.gzip) h['grpc-encoding'] = GZIP;
    return h;
  }
}

function ignore(): void {}

/** The request message; bytes that are not one are the caller's error (INVALID_ARGUMENT), with the message Connect's reader gives. */
function parse(schema: DescMessage, bytes: Uint8Array) {
  try {
    return fromBinary(schema, bytes);
  } catch (e) {
    throw new ConnectError(`${PARSE_ERROR_PREFIX}${e instanceof Error ? e.message : String(e)}`, Code.InvalidArgument);
  }
}

/** An implementation may return an init object instead of a message, as Connect allows. */
function output(method: DescMethod, value: any) {
  const schema = method.output as DescMessage;
  return isMessage(value, schema) ? value : create(schema, value);
}

/** The one request message as the one-item stream a streaming request carries. */
function once<T>(value: T): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator]() {
      let sent = false;
      return {
        next: async () => {
          if (sent) return { done: true, value: undefined };
          sent = true;
          return { done: false, value };
        },
      };
    },
  };
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
