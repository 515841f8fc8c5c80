/**
 * The worker's execution slots: `size` of them, each running one task at a time on a
 * handler thread it borrows for that task (threads.ts starts threads as they are needed,
 * up to `size`; a task defined as inline runs on the main thread). The number of free slots is what the worker may fetch.
 */
import type { Logger } from '../log.js';
import { loadRegistry } from '../tasks/define.js';
import { InlineHandlers } from './inline.js';
import { Slot } from './slot.js';
import { HandlerThreads, THREAD_DEFAULTS } from './threads.js';

export class Pool {
  private readonly idle: Slot[] = [];
  private closed = false;

  private constructor(
    private readonly threads: HandlerThreads,
    size: number,
    inline: InlineHandlers | undefined,
  ) {
    for (let i = 0; i < size; i++) this.idle.push(new Slot(threads, inline));
  }

  static async create(size: number, tasksModule: string, log: Logger): Promise<Pool> {
    const threads = await HandlerThreads.start(tasksModule, { ...THREAD_DEFAULTS, max: size }, log);
    // The main thread loads the tasks module only when some task runs there.
    let inline: InlineHandlers | undefined;
    if (threads.inlineTasks.length > 0) {
      try {
        inline = new InlineHandlers(await loadRegistry(tasksModule), new Set(threads.inlineTasks));
      } catch (err) {
        await threads.close();
        throw err;
      }
    }
    return new Pool(threads, size, inline);
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
