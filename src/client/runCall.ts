/**
 * Connect's runUnaryCall and runStreamingCall (@connectrpc/connect/protocol), same
 * signatures, with one AbortController per call where Connect makes three: a deadline
 * controller, one linked to it and to the caller's signal, and, when the call is over, an
 * abort of the linked one that builds a new DOMException. That plumbing was ~100 µs of
 * the client's CPU per call at a few hundred calls a second (docs/performance.md).
 *
 * What a caller and an interceptor see is Connect's: the request's `signal` aborts when
 * the caller's signal does (with the caller's reason), at the deadline
 * (DEADLINE_EXCEEDED), on an error (the error) and once the call is over (an AbortError,
 * one shared instance); an aborted call fails with CANCELED; interceptors run in Connect's
 * order; request messages are completed with `create` as Connect's `normalize` does.
 */
import { create, type DescMessage, type MessageInitShape } from '@bufbuild/protobuf';
import {
  Code,
  ConnectError,
  type Interceptor,
  type StreamRequest,
  type StreamResponse,
  type UnaryRequest,
  type UnaryResponse,
} from '@connectrpc/connect';

/** The reason a call's signal aborts with once the call is over (Connect's: an AbortError). */
const CALL_OVER = new DOMException('This operation was aborted', 'AbortError');

interface RunOptions<Req extends { message: unknown }, Res, Init> {
  interceptors?: Interceptor[];
  signal?: AbortSignal;
  timeoutMs?: number;
  req: Omit<Req, 'signal' | 'message'> & { message: Init };
  next: (req: Req) => Promise<Res>;
}

function intercepted<Req, Res>(next: (req: Req) => Promise<Res>, interceptors: Interceptor[] = []): (req: Req) => Promise<Res> {
  let fn = next as unknown as Parameters<Interceptor>[0];
  for (let i = interceptors.length - 1; i >= 0; i--) fn = interceptors[i]!(fn);
  return fn as unknown as (req: Req) => Promise<Res>;
}

/** A call's signal, and what ends it: `fail` on an error, `done` once it is over. */
function callSignal(caller: AbortSignal | undefined, timeoutMs: number | undefined) {
  const controller = new AbortController();
  const signal = controller.signal;
  const onCallerAbort = () => controller.abort(caller!.reason);
  let timer: NodeJS.Timeout | undefined;
  if (caller?.aborted) controller.abort(caller.reason);
  else caller?.addEventListener('abort', onCallerAbort);
  if (timeoutMs !== undefined && !signal.aborted) {
    const expire = () => controller.abort(new ConnectError('the operation timed out', Code.DeadlineExceeded));
    if (timeoutMs <= 0) expire();
    else timer = setTimeout(expire, timeoutMs);
  }
  const cleanup = () => {
    clearTimeout(timer);
    caller?.removeEventListener('abort', onCallerAbort);
  };
  return {
    signal,
    fail(reason: unknown): Promise<never> {
      const e = signal.aborted ? ConnectError.from(signal.reason, Code.Canceled) : ConnectError.from(reason);
      controller.abort(e);
      cleanup();
      return Promise.reject(e);
    },
    done(): void {
      cleanup();
      controller.abort(CALL_OVER);
    },
  };
}

export function runUnaryCall<I extends DescMessage, O extends DescMessage>(
  opt: RunOptions<UnaryRequest<I, O>, UnaryResponse<I, O>, MessageInitShape<I>>,
): Promise<UnaryResponse<I, O>> {
  const call = callSignal(opt.signal, opt.timeoutMs);
  const req = { ...opt.req, message: create(opt.req.method.input, opt.req.message), signal: call.signal } as UnaryRequest<I, O>;
  return intercepted(
    opt.next,
    opt.interceptors,
  )(req).then((res) => {
    call.done();
    return res;
  }, call.fail);
}

export function runStreamingCall<I extends DescMessage, O extends DescMessage>(
  opt: RunOptions<StreamRequest<I, O>, StreamResponse<I, O>, AsyncIterable<MessageInitShape<I>>>,
): Promise<StreamResponse<I, O>> {
  const call = callSignal(opt.signal, opt.timeoutMs);
  const source = opt.req.message;
  let over = false;
  // As Connect does: an aborted call tells the request iterable to stop (and why, when
  // the response had not ended).
  call.signal.addEventListener('abort', function (this: AbortSignal) {
    const it = source[Symbol.asyncIterator]();
    if (!over) it.throw?.(this.reason).catch(() => {});
    it.return?.().catch(() => {});
  });
  const req = { ...opt.req, message: completed(opt.req.method.input, source), signal: call.signal } as StreamRequest<I, O>;
  return intercepted(
    opt.next,
    opt.interceptors,
  )(req).then(
    (res) => ({
      ...res,
      message: {
        [Symbol.asyncIterator]() {
          const it = res.message[Symbol.asyncIterator]();
          return {
            next: () =>
              it.next().then((r) => {
                if (r.done) {
                  over = true;
                  call.done();
                }
                return r;
              }, call.fail),
          };
        },
      },
    }),
    call.fail,
  );
}

/** The request messages, each completed with `create` (Connect's normalizeIterable). */
function completed<I extends DescMessage>(desc: I, input: AsyncIterable<MessageInitShape<I>>) {
  const full = (r: IteratorResult<MessageInitShape<I>>) => (r.done ? r : { done: false as const, value: create(desc, r.value) });
  return {
    [Symbol.asyncIterator]() {
      const it = input[Symbol.asyncIterator]();
      return {
        next: () => it.next().then(full),
        ...(it.throw && { throw: (e?: unknown) => it.throw!(e).then(full) }),
        ...(it.return && { return: (v?: unknown) => it.return!(v).then(full) }),
      };
    },
  };
}
