/**
 * A stream source that hands over its next message through a callback instead of a
 * promise. The native gRPC path (grpc/nativeGrpc.ts) drives a watch this way, so a stream
 * waiting for its task's next change holds no promise, reaction or closure: only the
 * watch, waiting on its mailbox, and the call it will write to. Any other async iterable
 * is driven with `next()` as usual.
 */
export interface PullSink<T> {
  /** The next result; `done` at the end of the stream. */
  result(r: IteratorResult<T>): void;
  error(err: unknown): void;
}

export interface Pullable<T> extends AsyncIterator<T> {
  /** Like `next()`: exactly one call to the sink follows, never before `pull` returns. */
  pull(sink: PullSink<T>): void;
}

export function isPullable<T>(it: AsyncIterator<T>): it is Pullable<T> {
  return typeof (it as Partial<Pullable<T>>).pull === 'function';
}
