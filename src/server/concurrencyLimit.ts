/**
 * At most `max` of some work at once; the rest waits its turn, first come first served.
 * Watches use one for their reads of Redis (the record that opens one, the log that fills
 * a gap): ten thousand watchers opening together (clients reconnecting after a deploy)
 * would otherwise have ten thousand task records in flight at once, all of them garbage a
 * moment later, and the API's memory would peak with them. Redis answers them one at a
 * time anyway, so a few hundred in flight keep it as busy.
 */
export class ConcurrencyLimit {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly max: number) {}

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.running < this.max) this.running++;
    else await new Promise<void>((r) => this.waiting.push(r));
    try {
      return await work();
    } finally {
      // The next in line takes this place; with no one waiting, the place is free.
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
