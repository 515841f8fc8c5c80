/**
 * The worker's execution slots: `size` handler threads, each running one task at a time.
 * A killed or crashed slot is replaced, so the worker keeps its concurrency.
 */
import type { Logger } from '../log.js';
import { Slot } from './slot.js';

export class Pool {
  private readonly idle: Slot[] = [];
  private readonly all = new Set<Slot>();
  private closed = false;
  private replacing = 0;

  private constructor(
    private readonly tasksModule: string,
    private readonly log: Logger,
  ) {}

  static async create(size: number, tasksModule: string, log: Logger): Promise<Pool> {
    const pool = new Pool(tasksModule, log);
    const slots = await Promise.all(Array.from({ length: size }, () => Slot.spawn(tasksModule)));
    for (const s of slots) {
      pool.all.add(s);
      pool.idle.push(s);
    }
    return pool;
  }

  /** Slots free now (a slot being replaced is not free yet). */
  get free(): number {
    return this.idle.length;
  }

  take(): Slot | undefined {
    return this.idle.pop();
  }

  /** Give a slot back after its task settled; a dead one is replaced by a fresh thread. */
  release(slot: Slot, onReplaced: () => void): void {
    if (slot.alive) {
      if (this.closed) void slot.kill('shutdown');
      else this.idle.push(slot);
      return;
    }
    this.all.delete(slot);
    if (this.closed) return;
    this.replacing++;
    Slot.spawn(this.tasksModule)
      .then((fresh) => {
        if (this.closed) return void fresh.kill('shutdown');
        this.all.add(fresh);
        this.idle.push(fresh);
      })
      .catch((err: Error) => this.log.error(`could not start a handler thread: ${err.message}`))
      .finally(() => {
        this.replacing--;
        onReplaced();
      });
  }

  /** Stop every thread (running handlers are killed). */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.all].map((s) => s.kill('shutdown')));
    this.all.clear();
    this.idle.length = 0;
  }
}
