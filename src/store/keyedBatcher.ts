/**
 * Calls made together go to Redis together. Items added for one key (a queue) before the
 * scheduled flush are sent by one `send` call per chunk, in the order added, and each
 * caller gets its own answer: `send` returns one per item, a value or an Error that
 * rejects that item's caller alone. A failed `send` rejects every caller of its chunk.
 * Used for Starts (the enqueue script).
 */
export interface BatchOptions<T, R> {
  send(key: string, items: T[]): Promise<(R | Error)[]>;
  /** When the items added so far go out: `setImmediate` (this turn of the event loop) or
   * `queueMicrotask` (this run of microtasks). */
  schedule(flush: () => void): void;
  /** At most this many items per `send`, and (with `size`) about this much in all. */
  maxItems: number;
  size?: (item: T) => number;
  maxSize?: number;
}

/** A caller waiting for the answer to its item. */
export interface Waiting<T, R> {
  item: T;
  resolve: (r: R) => void;
  reject: (err: unknown) => void;
}

export class KeyedBatcher<T, R> {
  private readonly waiting = new Map<string, Waiting<T, R>[]>();
  private scheduled = false;

  constructor(private readonly options: BatchOptions<T, R>) {}

  add(key: string, item: T): Promise<R> {
    return new Promise((resolve, reject) => {
      const list = this.waiting.get(key);
      if (list) list.push({ item, resolve, reject });
      else this.waiting.set(key, [{ item, resolve, reject }]);
      if (!this.scheduled) {
        this.scheduled = true;
        this.options.schedule(this.flush);
      }
    });
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    const { maxItems, size, maxSize = Infinity } = this.options;
    const all = [...this.waiting];
    this.waiting.clear();
    for (const [key, list] of all) {
      let from = 0;
      while (from < list.length) {
        let to = from;
        let total = 0;
        while (to < list.length && to - from < maxItems && (to === from || total < maxSize)) {
          if (size) total += size(list[to]!.item);
          to++;
        }
        void this.send(key, list.slice(from, to));
        from = to;
      }
    }
  };

  private async send(key: string, chunk: Waiting<T, R>[]): Promise<void> {
    let answers: (R | Error)[];
    try {
      answers = await this.options.send(
        key,
        chunk.map((w) => w.item),
      );
    } catch (err) {
      for (const w of chunk) w.reject(err);
      return;
    }
    chunk.forEach((w, i) => {
      const a = answers[i];
      if (a instanceof Error) w.reject(a);
      else if (a === undefined) w.reject(new Error(`no answer for item ${i + 1} of ${chunk.length}`));
      else w.resolve(a);
    });
  }
}
