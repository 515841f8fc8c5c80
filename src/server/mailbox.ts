/** A one-reader queue a stream handler awaits: the next item, a timeout, or the end. */
export type Next<T> = { item: T } | { timeout: true } | { closed: true };

export class Mailbox<T> {
  private readonly items: T[] = [];
  private waiter: ((n: Next<T>) => void) | undefined;
  private closed = false;

  push(item: T): void {
    if (this.closed) return;
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      w({ item });
    } else this.items.push(item);
  }

  close(): void {
    this.closed = true;
    const w = this.waiter;
    this.waiter = undefined;
    w?.({ closed: true });
  }

  next(timeoutMs: number): Promise<Next<T>> {
    if (this.items.length > 0) return Promise.resolve({ item: this.items.shift()! });
    if (this.closed) return Promise.resolve({ closed: true });
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        resolve({ timeout: true });
      }, timeoutMs);
      this.waiter = (n) => {
        clearTimeout(timer);
        resolve(n);
      };
    });
  }
}
