/**
 * The trimmer duty: a worker that acknowledged messages of a queue trims that queue's
 * stream about once a second (trimQueue, src/broker/trimmer.ts), and once more as it
 * stops, for the messages its last tasks acknowledged. A queue nobody acknowledged
 * anything of is not touched, so an idle worker sends nothing.
 */
import type { RedisClient } from '../redis.js';
import { trimQueue } from '../broker/trimmer.js';
import type { Logger } from '../log.js';
import { Every } from './every.js';

const TRIM_EVERY_MS = 1000;

export class StreamTrimmer {
  private readonly touched = new Set<string>();
  private readonly every: Every;

  constructor(
    private readonly redis: RedisClient,
    private readonly log: Logger,
  ) {
    this.every = new Every(TRIM_EVERY_MS, () => this.trim(), log);
  }

  /** A message of `queue` was (or is being) acknowledged. */
  touch(queue: string): void {
    this.touched.add(queue);
  }

  start(): void {
    this.every.start();
  }

  /** Stop the timer and trim what was acknowledged since the last trim. */
  async stop(): Promise<void> {
    this.every.stop();
    await this.trim().catch((err: Error) => this.log.warn(`trimming the queues failed: ${err.message}`));
  }

  /** Trim every queue touched since the last call (a queue whose trim failed stays touched). */
  private async trim(): Promise<void> {
    const queues = [...this.touched];
    this.touched.clear();
    await Promise.all(
      queues.map((q) =>
        trimQueue(this.redis, q).catch((err: unknown) => {
          this.touched.add(q);
          throw err;
        }),
      ),
    );
  }
}
