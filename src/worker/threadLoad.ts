/**
 * How loaded one handler thread is, from the handler times its tasks report: the average
 * time per task (what a task posted now waits behind each one queued), the share of the
 * recent window it spent running tasks, and whether the task it runs now is stuck.
 */
export class ThreadLoad {
  /** Average handler time (ms) of its recent tasks; a new thread starts from its pool's figure. */
  averageMs = 0;
  private busyMs = 0;
  private windowStart = performance.now();
  private lastUtilization = 0;
  /** The task running now ran past the pool's limit at two checks in a row. */
  stuck = false;
  /** The tag of the task seen running too long at the last check. */
  private suspect: number | undefined;

  /** The task with `tag` ended after running `ms`. */
  ended(tag: number, ms: number): void {
    this.averageMs = this.averageMs * 0.8 + ms * 0.2;
    this.busyMs += ms;
    if (tag === this.suspect) {
      this.suspect = undefined;
      this.stuck = false;
    }
  }

  /** Share of the recent time (last ~250 ms window) the thread spent running tasks. A
   * queue on a thread that is mostly idle comes from a burst it will clear faster than a
   * new thread could start; a queue on a busy one is worth another thread. */
  get utilization(): number {
    const now = performance.now();
    const span = now - this.windowStart;
    const current = span >= 50 ? this.busyMs / span : this.lastUtilization;
    if (span >= 250) {
      this.lastUtilization = current;
      this.windowStart = now;
      this.busyMs = 0;
    }
    return Math.max(current, this.lastUtilization);
  }

  /** A check found the task with `tag` running past the limit (undefined: none was). Once
   * is not enough (a busy machine stalls a thread for a moment); the same task at two
   * checks in a row makes the thread stuck, until that task ends. */
  sawOverdue(tag: number | undefined): boolean {
    if (tag === undefined) {
      this.suspect = undefined;
      this.stuck = false;
    } else if (this.suspect === tag) this.stuck = true;
    else this.suspect = tag;
    return this.stuck;
  }
}
