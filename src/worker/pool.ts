/**
 * The worker's execution slots: `size` of them, each running one task at a time on a
 * handler thread it borrows for that task (threads.ts starts threads as they are needed,
 * up to `size`). The number of free slots is what the worker may fetch.
 */
import type { Logger } from '../log.js';
import { Slot } from './slot.js';
import { HandlerThreads, THREAD_DEFAULTS } from './threads.js';

export class Pool {
  private readonly idle: Slot[] = [];
  private closed = false;

  private constructor(
    private readonly threads: HandlerThreads,
    size: number,
  ) {
    for (let i = 0; i < size; i++) this.idle.push(new Slot(threads));
  }

  static async create(size: number, tasksModule: string, log: Logger): Promise<Pool> {
    const threads = await HandlerThreads.start(tasksModule, { ...THREAD_DEFAULTS, max: size }, log);
    return new Pool(threads, size);
  }

  /** Slots free now. */
  get free(): number {
    return this.idle.length;
  }

  take(): Slot | undefined {
    return this.idle.pop();
  }

  /** Give a slot back after its task settled. */
  release(slot: Slot): void {
    if (!this.closed) this.idle.push(slot);
  }

  /** Stop every thread (running handlers are killed). */
  async close(): Promise<void> {
    this.closed = true;
    this.idle.length = 0;
    await this.threads.close();
  }
}
