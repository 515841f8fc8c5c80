/**
 * The end of a call, heard without an AbortSignal where the call can do without one.
 *
 * A watch stream waits for hours, by the ten thousand; each needs to hear when its call
 * ends (the client left, a deadline passed) and the stream-limit interceptor needs to give
 * the stream's place back. Through Connect's handler that is the call's AbortSignal. The
 * native gRPC path (grpc/nativeGrpc.ts) offers the same news straight from its call
 * context, so a stream there builds no AbortController, EventTarget and wrapped listeners
 * (heap per open stream, as the fan-out bench's heap snapshots show).
 */
import { ConnectError } from '@connectrpc/connect';

/** Told once, when the call ends. An object rather than a closure: one is held per stream. */
export interface EndListener {
  handleEvent(): void;
}

export interface CallEnd {
  /** `listener` runs once when the call ends; at once if it already has. */
  add(listener: EndListener): void;
  remove(listener: EndListener): void;
  /** Why the call ended (a ConnectError when it carries a status); undefined while it runs. */
  readonly reason: unknown;
}

/** Where a request or a handler context of the native path keeps its CallEnd. */
export const CALL_END = Symbol('taskwire.callEnd');

/** The call's end, from a Connect request or handler context (which have at least a signal). */
export function callEndOf(source: { readonly signal: AbortSignal; readonly [CALL_END]?: CallEnd }): CallEnd {
  return source[CALL_END] ?? new SignalEnd(source.signal);
}

/**
 * A stream whose call ended ends with the status its end carries, such as a deadline's
 * DEADLINE_EXCEEDED; a plain end (a client that went away over HTTP/1.1) carries none, and
 * the stream just ends.
 */
export function throwEndStatus(end: CallEnd): void {
  if (end.reason instanceof ConnectError) throw end.reason;
}

/** A CallEnd over an AbortSignal: Connect's handler path. */
class SignalEnd implements CallEnd {
  constructor(private readonly signal: AbortSignal) {}

  add(listener: EndListener): void {
    if (this.signal.aborted) listener.handleEvent();
    else this.signal.addEventListener('abort', listener, { once: true });
  }

  remove(listener: EndListener): void {
    this.signal.removeEventListener('abort', listener);
  }

  get reason(): unknown {
    return this.signal.aborted ? this.signal.reason : undefined;
  }
}

/**
 * The listeners of one call. A watch stream has two (the stream limit's and the watch's),
 * kept in two fields; more go to an array.
 */
export class EndListeners {
  private a: EndListener | undefined;
  private b: EndListener | undefined;
  private more: EndListener[] | undefined;

  add(listener: EndListener): void {
    if (this.a === undefined) this.a = listener;
    else if (this.b === undefined) this.b = listener;
    else (this.more ??= []).push(listener);
  }

  remove(listener: EndListener): void {
    if (this.a === listener) this.a = undefined;
    else if (this.b === listener) this.b = undefined;
    else if (this.more) {
      const i = this.more.indexOf(listener);
      if (i >= 0) this.more.splice(i, 1);
    }
  }

  /** Tells every listener, once. */
  fire(): void {
    const { a, b, more } = this;
    this.a = this.b = this.more = undefined;
    a?.handleEvent();
    b?.handleEvent();
    if (more) for (const l of more) l.handleEvent();
  }
}
