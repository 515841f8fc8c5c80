/**
 * A stream source that hands over its next message through a callback instead of a
 * promise. The native gRPC path (grpc/nativeGrpc.ts) drives a watch this way, so a stream
 * waiting for its task's next change holds no promise, reaction or closure: only the
 * watch, waiting on its mailbox, and the call it will write to. Any other async iterator
 * is driven through `pullable()`, which calls its `next()`.
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

/** The iterator itself when it is pullable (a watch), else one that pulls with `next()`. */
export function pullable<T>(it: AsyncIterator<T>): Pullable<T> {
  return typeof (it as Partial<Pullable<T>>).pull === 'function' ? (it as Pullable<T>) : new NextPull(it);
}

class NextPull<T> implements Pullable<T> {
  constructor(private readonly it: AsyncIterator<T>) {}

  next(): Promise<IteratorResult<T>> {
    return this.it.next();
  }

  pull(sink: PullSink<T>): void {
    this.it.next().then(
      (r) => sink.result(r),
      (err) => sink.error(err),
    );
  }

  async return(): Promise<IteratorResult<T>> {
    return (await this.it.return?.()) ?? { done: true, value: undefined };
  }
}
