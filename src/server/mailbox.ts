/** A one-reader queue a stream handler awaits: the next item, a timeout, or the end. */
export type Next<T> = { item: T } | { timeout: true } | { closed: true };

/**
 * Every mailbox waiting with a timeout, checked by one timer for the whole process instead
 * of a timer per wait: ten thousand quiet watch streams cost ten thousand set entries,
 * not ten thousand timers. A wait times out between `timeoutMs` and 1.25 × `timeoutMs`
 * after it began (the timer ticks every quarter of the shortest timeout waited on).
 */
const waiting = new Set<Mailbox<unknown>>();
let ticker: NodeJS.Timeout | undefined;
let tickMs = Infinity;

function tick(): void {
  const now = Date.now();
  for (const box of waiting) box.expire(now);
  if (waiting.size === 0) {
    clearInterval(ticker);
    ticker = undefined;
    tickMs = Infinity;
  }
}

function wait(box: Mailbox<unknown>, timeoutMs: number): void {
  waiting.add(box);
  const every = Math.max(10, Math.floor(timeoutMs / 4));
  if (every < tickMs) {
    clearInterval(ticker);
    tickMs = every;
    ticker = setInterval(tick, every);
    ticker.unref();
  }
}

/** Who waits on a mailbox: an object, so a waiting reader holds no closure or promise. */
export interface MailWaiter<T> {
  mail(n: Next<T>): void;
}

const CLOSED = { closed: true } as const;
const TIMEOUT = { timeout: true } as const;

/** A waiter is told in a microtask of its own, never inside the push or close that woke it. */
function deliver<T>(waiter: MailWaiter<T>, n: Next<T>): void {
  queueMicrotask(() => waiter.mail(n));
}

export class Mailbox<T> {
  /** Items not yet taken; none held while there are none. */
  private items: T[] | undefined;
  private waiter: MailWaiter<T> | undefined;
  private deadline = 0;
  private closed = false;

  push(item: T): void {
    if (this.closed) return;
    const w = this.waiter;
    if (w) {
      this.settle();
      deliver(w, { item });
    } else (this.items ??= []).push(item);
  }

  /** Items pushed and not yet taken. */
  get backlog(): number {
    return this.items?.length ?? 0;
  }

  /** Forget the items not yet taken. */
  drop(): void {
    this.items = undefined;
  }

  close(): void {
    this.closed = true;
    const w = this.waiter;
    this.settle();
    if (w) deliver(w, CLOSED);
  }

  /** Lets a mailbox hear its call's end (callEnd.ts) without a closure. */
  handleEvent(): void {
    this.close();
  }

  next(timeoutMs: number): Promise<Next<T>> {
    return new Promise((resolve) => this.wait(timeoutMs, { mail: resolve }));
  }

  /** `waiter` gets the next item, a timeout after `timeoutMs`, or the end; one reader at a time. */
  wait(timeoutMs: number, waiter: MailWaiter<T>): void {
    if (this.items) {
      const item = this.items.shift()!;
      if (this.items.length === 0) this.items = undefined;
      return deliver(waiter, { item });
    }
    if (this.closed) return deliver(waiter, CLOSED);
    this.waiter = waiter;
    this.deadline = Date.now() + timeoutMs;
    wait(this as Mailbox<unknown>, timeoutMs);
  }

  /** @internal the shared timer: time out a wait whose deadline has passed. */
  expire(now: number): void {
    const w = this.waiter;
    if (w && now >= this.deadline) {
      this.settle();
      deliver(w, TIMEOUT);
    }
  }

  private settle(): void {
    this.waiter = undefined;
    waiting.delete(this as Mailbox<unknown>);
  }
}
