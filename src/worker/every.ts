/**
 * The timer under a worker's periodic duties: runs a job every `ms` while started. A run
 * still going when the next is due is not started twice (a slow Redis gets one request at a
 * time from each duty), and a failed run is logged and the next one goes on.
 */
import type { Logger } from '../log.js';

export class Every {
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  constructor(
    private readonly ms: number,
    private readonly job: () => Promise<void>,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => {
      if (this.busy) return;
      this.busy = true;
      this.job()
        .catch((err: Error) => this.log.warn(err.message))
        .finally(() => (this.busy = false));
    }, this.ms);
  }

  /** No run starts after this; one in flight ends by itself. */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
