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

export class Mailbox<T> {
  private items: T[] = [];
  private waiter: ((n: Next<T>) => void) | undefined;
  private deadline = 0;
  private closed = false;

  push(item: T): void {
    if (this.closed) return;
    const w = this.waiter;
    if (w) {
      this.settle();
      w({ item });
    } else this.items.push(item);
  }

  close(): void {
    this.closed = true;
    const w = this.waiter;
    this.settle();
    w?.({ closed: true });
  }

  /** Lets a mailbox be an abort listener (`signal.addEventListener('abort', box)`) without a closure. */
  handleEvent(): void {
    this.close();
  }

  next(timeoutMs: number): Promise<Next<T>> {
    if (this.items.length > 0) {
      const item = this.items.shift()!;
      if (this.items.length === 0) this.items = []; // not the emptied array's capacity
      return Promise.resolve({ item });
    }
    if (this.closed) return Promise.resolve({ closed: true });
    return new Promise((resolve) => {
      this.waiter = resolve;
      this.deadline = Date.now() + timeoutMs;
      wait(this as Mailbox<unknown>, timeoutMs);
    });
  }

  /** @internal the shared timer: time out a wait whose deadline has passed. */
  expire(now: number): void {
    const w = this.waiter;
    if (w && now >= this.deadline) {
      this.settle();
      w({ timeout: true });
    }
  }

  private settle(): void {
    this.waiter = undefined;
    waiting.delete(this as Mailbox<unknown>);
  }
}
