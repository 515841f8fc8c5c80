/**
 * The fetch loop: fills the worker's free slots until a stop, and only when a slot is
 * free, so nothing waits in a worker that could run elsewhere.
 *
 * Each turn that frees slots sends a take for them with its finishes (AttemptStore.take: a
 * non-blocking read of each queue, Consumer.readNow, in the same write as the script call
 * that carries the turn's finishes); what it read is claimed by the next turn's call, with
 * that turn's finishes and take. Takes do not wait for the ones already in flight: so
 * Redis runs one turn's calls while the worker runs what the last one began, as a worker
 * with one call per slot would. Only when a take found the queues empty, and the others
 * have answered, does the loop block on the reader's own connection (Consumer.read). A look
 * for abandoned tasks the reclaimer asked for goes before new work.
 */
import type { RedisClient } from '../redis.js';
import { type Consumer, ensureGroups } from '../broker/consumer.js';
import { requeueUnclaimed } from '../broker/requeue.js';
import type { Logger } from '../log.js';
import type { AttemptStore, Delivery } from '../store/attemptStore.js';
import type { Recoverer } from './recoverer.js';
import type { Runner } from './runner.js';

/** How long a blocking read waits for a message before it looks again. */
const BLOCK_MS = 2000;
/** The pause after a failed read. */
const RETRY_READ_MS = 500;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface FetcherParts {
  /** The worker's connection for commands (the consumer reads on one of its own). */
  redis: RedisClient;
  consumer: Consumer;
  attempts: AttemptStore;
  runner: Runner;
  recoverer: Pick<Recoverer, 'lookFirst'>;
  queues: readonly string[];
  log: Logger;
}

export class Fetcher {
  /** Which queue gets the larger share of the free slots in the next takeNow. */
  private takeTurn = 0;
  /** The takes in flight (takeNow), each until it answered. */
  private readonly takes = new Set<Promise<number | undefined>>();
  /** A take found the queues empty: read them blocking (once no take is in flight). */
  private drained = false;
  /** Why the last take failed, for the loop to report. */
  private takeFailed: Error | undefined;
  private stopping = false;
  private wake: (() => void) | undefined;
  private done: Promise<void> = Promise.resolve();
  private forceNow: () => void = () => {};
  private readonly forced = new Promise<void>((r) => (this.forceNow = r));
  private readonly runner: Runner;
  private readonly attempts: AttemptStore;

  constructor(private readonly parts: FetcherParts) {
    ({ runner: this.runner, attempts: this.attempts } = parts);
  }

  start(): void {
    this.done = this.loop();
  }

  /**
   * Take no new work: a blocked read is cut off, and a message read as the stop began is
   * kept by the runner, not begun, to be handed back. Resolves once the loop ended and the
   * takes in flight answered (what they began runs all the same: the stop waits for it).
   */
  stop(): Promise<void> {
    this.stopping = true;
    this.parts.consumer.close();
    this.wakeUp();
    return this.done;
  }

  /** A slot may be free, or a take answered: look again. */
  wakeUp(): void {
    this.wake?.();
    this.wake = undefined;
  }

  private async loop(): Promise<void> {
    const { queues, consumer } = this.parts;
    while (!this.stopping) {
      if (this.takeFailed) {
        const err = this.takeFailed;
        this.takeFailed = undefined;
        await this.readFailed(err);
        continue;
      }
      if (this.runner.free <= 0 || (this.drained && this.takes.size > 0)) {
        await new Promise<void>((r) => (this.wake = r));
        continue;
      }
      const look = this.parts.recoverer.lookFirst();
      if (look) {
        await look.catch((err: Error) => this.parts.log.warn(err.message));
        continue;
      }
      if (!this.drained) {
        // What is there now, read with the script call that carries this turn's finishes,
        // sized when it goes out by every slot they free.
        await this.attempts.atTurnEnd(async () => void this.track(this.takeNow()));
        continue;
      }
      try {
        const deliveries = await consumer.read(Math.max(1, Math.ceil(this.runner.free / queues.length)), BLOCK_MS);
        this.drained = false;
        // A read of many streams gives up to the count from each, so it may bring more
        // messages than there are free slots: the rest go back on their queues at once, for
        // any worker to take, rather than waiting here for a slot.
        let room = this.runner.free;
        const surplus: Delivery[] = [];
        for (const d of deliveries) {
          if (this.stopping) this.runner.keep(d);
          else if (room-- > 0) this.runner.deliver(d);
          else surplus.push(d);
        }
        for (const d of surplus) {
          await requeueUnclaimed(this.parts.redis, d).catch(() => this.runner.deliver(d));
        }
      } catch (err) {
        if (this.stopping) break;
        await this.readFailed(err as Error);
      }
    }
    // A take in flight may begin tasks: its answer is waited for, unless the stop is forced
    // (its Redis may be gone, and the call would wait for it to return).
    await Promise.race([Promise.allSettled(this.takes), this.forced]);
  }

  /** A forced stop: stop() no longer waits for the takes in flight. */
  force(): void {
    this.stopping = true;
    this.forceNow();
  }

  /** Keep `take` (a takeNow in flight) until it answers; a take that read nothing means the queues are empty. */
  private track(take: Promise<number | undefined>): void {
    this.takes.add(take);
    take
      .then(
        (began) => {
          if (began === 0) this.drained = true;
        },
        (err: Error) => (this.takeFailed = err),
      )
      .finally(() => {
        this.takes.delete(take);
        this.wakeUp();
      });
  }

  private async readFailed(err: Error): Promise<void> {
    this.parts.log.warn(`reading the queues failed: ${err.message}`);
    // A Redis that lost its data (restarted empty, failed over to a replica that lagged)
    // has no consumer group: make it again, or this worker would never read a queue again.
    if (err.message.includes('NOGROUP')) await ensureGroups(this.parts.redis, this.parts.queues).catch(() => {});
    await sleep(RETRY_READ_MS);
  }

  /**
   * Read as many messages as there are free slots, no more, and hand them to the runner (which
   * claims each in the next turn's call and runs it): the free slots are shared out over the
   * queues (the first queue to get a larger share turns with each call), one take per queue.
   * Returns how many it read, or undefined when no slot was free (or a stop began since the
   * take was planned: it reads nothing new).
   */
  private async takeNow(): Promise<number | undefined> {
    const free = this.runner.free;
    if (free <= 0 || this.stopping) return undefined;
    const { queues, consumer, redis } = this.parts;
    const reads: Promise<Delivery[]>[] = [];
    const first = this.takeTurn++ % queues.length;
    // The slots are held for these reads: the reclaimer, a blocking read and the next take,
    // which also fill free slots, must not take them meanwhile.
    this.runner.reserve(free);
    for (let i = 0; i < queues.length; i++) {
      const q = queues[(first + i) % queues.length]!;
      const share = Math.floor(free / queues.length) + (i < free % queues.length ? 1 : 0);
      if (share === 0) continue;
      reads.push(this.attempts.take(q, () => consumer.readNow(redis, q, share)));
    }
    const answers = await Promise.allSettled(reads);
    this.runner.unreserve(free);
    let read = 0;
    for (const a of answers) {
      if (a.status === 'rejected') continue;
      for (const d of a.value) {
        read++;
        // Read already: kept to be handed back if a stop began meanwhile.
        if (this.stopping) this.runner.keep(d);
        else this.runner.deliver(d);
      }
    }
    const failed = answers.find((a) => a.status === 'rejected');
    if (failed) throw failed.reason;
    return read;
  }
}
