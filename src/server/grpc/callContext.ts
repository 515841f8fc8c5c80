/**
 * A call's HandlerContext, built as it is used: the AbortController, the web Headers and
 * the context values come into being when a handler or an interceptor first reads them.
 * A unary call that reads none of them costs none of them; Connect's context builds two
 * linked AbortControllers, three Headers and a DOMException for every call.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { DescMethod, DescService } from '@bufbuild/protobuf';
import { Code, ConnectError, type ContextKey, type ContextValues, type HandlerContext } from '@connectrpc/connect';
import { CALL_END, EndListeners, type CallEnd, type EndListener } from '../callEnd.js';
import { plain } from './status.js';

/** The reason a call's signal carries once it ended normally. */
const ENDED = new ConnectError('the call has ended', Code.Canceled);

/**
 * Header names and values that many calls send alike (content-type, te, user-agent, the
 * authority…), kept once for all of them: a watch holds its request headers for as long
 * as it is open, and Node makes new strings for every request. At most 512 strings of up
 * to 128 characters are remembered; others (a traceparent, a token) are kept as they come.
 */
const interned = new Map<string, string>();

function intern(s: string): string {
  const known = interned.get(s);
  if (known !== undefined) return known;
  if (s.length <= 128 && interned.size < 512) interned.set(s, s);
  return s;
}

/**
 * The call context is its own list of end listeners (EndListeners, callEnd.ts), which the
 * watch and the stream limit hear without an AbortSignal: what keeps a waiting stream small.
 */
export class CallContext extends EndListeners implements HandlerContext, CallEnd {
  readonly protocolName = 'grpc';
  readonly requestMethod = 'POST';
  private controller?: AbortController;
  private ended?: unknown;
  private requestHeaders?: Headers;
  private responseHeaders?: Headers;
  private responseTrailers?: Headers;
  private contextValues?: ContextValues;
  private readonly deadline?: number;
  /** The request's headers as name, value, name, value… (Node's header object is large). */
  private readonly pairs: string[] = [];
  private readonly authority: string;
  private readonly scheme: string;

  constructor(
    readonly method: DescMethod,
    raw: IncomingHttpHeaders,
    private readonly stream: ServerHttp2Stream,
    private readonly valuesOf: (stream: ServerHttp2Stream) => ContextValues,
    timeoutMs: number | undefined,
  ) {
    super();
    if (timeoutMs !== undefined) this.deadline = Date.now() + timeoutMs;
    this.scheme = intern(raw[':scheme'] ?? 'http');
    this.authority = intern(raw[':authority'] ?? '');
    for (const key in raw) {
      const value = raw[key];
      if (key[0] === ':' || value === undefined) continue;
      if (Array.isArray(value)) for (const v of value) this.pairs.push(intern(key), intern(v));
      else this.pairs.push(intern(key), intern(value));
    }
  }

  get service(): DescService {
    return this.method.parent;
  }

  get url(): string {
    return `${this.scheme}://${this.authority}/${this.method.parent.typeName}/${this.method.name}`;
  }

  timeoutMs(): number | undefined {
    return this.deadline === undefined ? undefined : this.deadline - Date.now();
  }

  get signal(): AbortSignal {
    if (this.controller) return this.controller.signal;
    if (this.ended !== undefined) return AbortSignal.abort(this.ended);
    return (this.controller = new AbortController()).signal;
  }

  get [CALL_END](): CallEnd {
    return this;
  }

  get reason(): unknown {
    return this.ended;
  }

  override add(listener: EndListener): void {
    if (this.ended !== undefined) listener.handleEvent();
    else super.add(listener);
  }

  get requestHeader(): Headers {
    if (!this.requestHeaders) {
      this.requestHeaders = new Headers();
      for (let i = 0; i < this.pairs.length; i += 2) this.requestHeaders.append(this.pairs[i]!, this.pairs[i + 1]!);
    }
    return this.requestHeaders;
  }

  get responseHeader(): Headers {
    return (this.responseHeaders ??= new Headers());
  }

  get responseTrailer(): Headers {
    return (this.responseTrailers ??= new Headers());
  }

  get values(): ContextValues {
    return (this.contextValues ??= this.valuesOf(this.stream));
  }

  /** Ends the call for whoever listens to its end or its signal: with an error, or as ended normally. */
  abort(reason: unknown = ENDED): void {
    if (this.ended !== undefined) return;
    this.ended = reason;
    this.fire();
    this.controller?.abort(reason);
  }

  /** What a handler added to the response headers or trailers, for the wire. */
  extraHeaders(): OutgoingHttpHeaders | undefined {
    return this.responseHeaders && plain(this.responseHeaders);
  }

  extraTrailers(): Headers | undefined {
    return this.responseTrailers;
  }
}

/**
 * Connect's ContextValues as one small object (Connect's own is three closures per call).
 * A call usually carries one value (its connection): that one is kept in two fields.
 */
export class CallValues implements ContextValues {
  private id: symbol | undefined;
  private value: unknown;
  private more: Map<symbol, unknown> | undefined;

  get<T>(key: ContextKey<T>): T {
    if (this.id === key.id) return this.value as T;
    return this.more?.has(key.id) ? (this.more.get(key.id) as T) : key.defaultValue;
  }

  set<T>(key: ContextKey<T>, value: T): this {
    if (this.id === undefined || this.id === key.id) {
      this.id = key.id;
      this.value = value;
      this.more?.delete(key.id);
    } else (this.more ??= new Map()).set(key.id, value);
    return this;
  }

  delete(key: ContextKey<unknown>): this {
    if (this.id === key.id) {
      this.id = undefined;
      this.value = undefined;
    } else this.more?.delete(key.id);
    return this;
  }
}
