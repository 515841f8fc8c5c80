/**
 * Running tasks in the worker's slots. There is one way for a task to begin: `begin`, with
 * an attempt already begun in Redis (a Taken), which takes a free slot, runs the task's
 * handler there and writes how the attempt ended. The fetch loop's takes read and begin in
 * one script call and hand their tasks straight to it; a message handed over not yet begun
 * (a blocking read, a task taken over from a dead worker) is begun first (`deliver`: its
 * claim rides in the next attempt call, with a slot held for it), or waits here for a free
 * slot.
 *
 * The runner keeps the slot count the fetch loop and the reclaimer fill (`free`: slots
 * neither running a task, nor promised to a message waiting here or to a begin in flight),
 * and what the lease keeper renews and the canceller stops.
 */
import { randomUUID } from 'node:crypto';
import type { LogFields, Logger } from '../log.js';
import type { AttemptStore, Delivery, Taken } from '../store/attemptStore.js';
import type { RunnableTask } from '../store/record.js';
import { childSpan, parseTraceparent, traceFields } from '../trace.js';
import { endOf, writeEnd } from './attemptEnd.js';
import type { Canceller, CancelMode } from './canceller.js';
import type { Pool } from './pool.js';
import type { Promoter } from './promoter.js';
import type { Outcome, Slot } from './slot.js';
import type { StreamTrimmer } from './streamTrimmer.js';

/** A task running here, from the moment it has a slot until its end is written. */
export interface Running {
  delivery: Delivery;
  token: string;
  slot: Slot;
  cancel?: CancelMode;
}

export interface RunnerParts {
  attempts: AttemptStore;
  pool: Pool;
  canceller: Pick<Canceller, 'began'>;
  trimmer: Pick<StreamTrimmer, 'touch'>;
  promoter: Pick<Promoter, 'promoteAt'>;
  log: Logger;
  /** A slot was freed (the fetch loop may take work for it). */
  slotFreed: () => void;
}

export class Runner {
  private readonly runs = new Map<string, Running>();
  /** Messages handed over beyond the free slots (several queues read at once, a reclaim). */
  private readonly waiting: Delivery[] = [];
  /** Slots promised to begins in flight: what they begin must find a slot. */
  private reserved = 0;
  private idleWaiters: (() => void)[] = [];
  private readonly attempts: AttemptStore;
  private readonly pool: Pool;
  private readonly log: Logger;

  constructor(private readonly parts: RunnerParts) {
    ({ attempts: this.attempts, pool: this.pool, log: this.log } = parts);
  }

  /** The tasks running here, by id. */
  get running(): ReadonlyMap<string, Running> {
    return this.runs;
  }

  /** Slots neither running a task, nor promised to a message waiting here or to a begin in flight. */
  get free(): number {
    return this.pool.free - this.waiting.length - this.reserved;
  }

  /** Hold `n` free slots for tasks about to begin (begin with `reserved` lets one go). */
  reserve(n: number): void {
    this.reserved += n;
  }

  /** Let go `n` held slots no task began in. */
  unreserve(n: number): void {
    this.reserved -= n;
    this.beginWaiting();
  }

  /** Run a task whose attempt is begun (`reserved`: in a slot held for it). */
  begin(t: Taken, reserved = false): void {
    if (reserved) this.reserved--;
    const slot = this.pool.take();
    // A begin takes no more than the slots held for it, so a begun task always finds one.
    if (!slot) this.log.error(`task ${t.d.id}: begun with no free slot; it runs again when its lease runs out`);
    else void this.run(t, slot);
  }

  /** Begin and run a message handed to this worker, or keep it for the next free slot. */
  deliver(d: Delivery): void {
    if (this.pool.free - this.reserved <= 0) {
      this.waiting.push(d);
      return;
    }
    this.reserved++;
    const token = randomUUID();
    void this.attempts.claim(d, token).then(
      (claim) => this.begin({ d, token, claim }, true),
      (err: Error) => this.begin({ d, token, claim: err }, true),
    );
  }

  /** Keep a message read as a stop began, to be handed back (takeWaiting). */
  keep(d: Delivery): void {
    this.waiting.push(d);
  }

  /** The messages waiting here for a slot, no longer kept. */
  takeWaiting(): Delivery[] {
    return this.waiting.splice(0);
  }

  /** Every message this worker holds: those of running tasks, and those waiting here. */
  held(): Delivery[] {
    return [...[...this.runs.values()].map((r) => r.delivery), ...this.waiting];
  }

  /** Resolves once no task runs here. */
  idle(): Promise<void> {
    if (this.runs.size === 0) return Promise.resolve();
    return new Promise<void>((r) => this.idleWaiters.push(r));
  }

  /** Stop every running task by force; each ends PENDING, handed back to its queue. */
  handBackRunning(): void {
    for (const run of this.runs.values()) void run.slot.kill('shutdown');
  }

  private beginWaiting(): void {
    while (this.waiting.length > 0 && this.pool.free - this.reserved > 0) this.deliver(this.waiting.shift()!);
  }

  private slotFreed(): void {
    this.beginWaiting();
    this.parts.slotFreed();
    if (this.runs.size === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  private async run({ d, token, claim }: Taken, slot: Slot): Promise<void> {
    let released = false;
    try {
      if (claim instanceof Error) throw claim;
      if (!claim.run) return;
      const task = claim.task;
      // Each attempt is a span of the trace the Start request began (see src/trace.ts).
      const parent = parseTraceparent(task.traceparent);
      // The fields every line about this attempt carries (passed per line: a child logger
      // per task would cost more than the one line it writes).
      const about: LogFields = {
        task_id: task.id,
        task: task.name,
        attempt: task.attempt,
        ...(parent ? traceFields(childSpan(parent)) : {}),
      };
      this.log.debug('task started', about);
      // Running (its lease renewed, a stop waits for it) from the moment it has a slot.
      const run: Running = { delivery: d, token, slot };
      this.runs.set(d.id, run);
      const began = Date.now();
      const outcome = await this.runInSlot(task, run);
      const [state, fields] = endOf(task, outcome);
      // The handler is done: the slot is free once its finish is queued. The finish goes in
      // this turn's script call, before the claims and reads of the same turn (AttemptStore),
      // so the next task shares its round trip and still never runs ahead of a free slot in
      // Redis. (The task stays in `running`, its lease renewed, until the finish is written.)
      const writing = writeEnd(this.attempts, this.log, d, token, state, fields);
      released = true;
      this.release(slot);
      this.slotFreed();
      const written = await writing;
      if (written === 'RETRY' && fields.nextAttemptAt) this.parts.promoter.promoteAt(fields.nextAttemptAt);
      const ms = Date.now() - began;
      if (written) {
        // The line says what the record says: a cancel requested during the run ends it
        // REVOKED whatever the handler threw (its AbortError is not what the task shows).
        const revoked = written === 'REVOKED';
        const error = revoked ? { error_type: 'TaskRevokedError' } : { error_type: fields.errorType, error_message: fields.errorMessage };
        this.log.info(`task ${written.toLowerCase()} in ${ms}ms`, { ...about, state: written, ms, ...error });
        if (!revoked && fields.traceback) this.log.debug('task traceback', { ...about, traceback: fields.traceback });
      }
    } catch (err) {
      // The message stays pending; when its lease runs out it is reclaimed and retried.
      this.log.error(`task ${d.id}: ${(err as Error).message}`);
    } finally {
      // Its message was acknowledged (by the claim or the finish), or will be by another
      // worker: either way the stream may be trimmed.
      this.parts.trimmer.touch(d.queue);
      this.runs.delete(d.id);
      if (!released) this.release(slot);
      this.slotFreed();
    }
  }

  /** Give a slot back to the pool, once an inline handler that outlived its task has returned. */
  private release(slot: Slot): void {
    const busy = slot.busyUntil;
    if (!busy) return this.pool.release(slot);
    slot.busyUntil = undefined;
    void busy.then(() => {
      this.pool.release(slot);
      this.slotFreed();
    });
  }

  private async runInSlot(task: RunnableTask, run: Running): Promise<Outcome> {
    const limit = task.timeLimitMs ? setTimeout(() => void run.slot.kill('time_limit'), task.timeLimitMs) : undefined;
    try {
      const outcome = run.slot.run(
        {
          type: 'run',
          id: task.id,
          name: task.name,
          args: task.argsJson,
          kwargs: task.kwargsJson,
          attempt: task.attempt,
        },
        (json) => {
          this.attempts.progress(run.delivery, run.token, json).catch((err: Error) => {
            this.log.warn(`task ${task.id}: progress not recorded: ${err.message}`);
          });
        },
      );
      // A cancel pushed while the claim was in flight found nothing running: apply it now.
      this.parts.canceller.began(task.id);
      return await outcome;
    } finally {
      clearTimeout(limit);
    }
  }
}
