/**
 * The worker's writes to task records: begin an attempt, report progress, end it.
 * Each is one Lua script; each end also acknowledges the queue message in the same step.
 */
import type { Redis } from 'ioredis';
import { CONSUMER_GROUP, channels, keys } from './keys.js';
import { pairsToHash, parseRecord, type TaskRecord } from './record.js';
import { runScript } from './scripts.js';
import type { State } from './states.js';

/** A queue message handed to this worker. */
export interface Delivery {
  queue: string;
  msgId: string;
  id: string;
  /** The task's exclusive key, '' when none. */
  ekey: string;
}

export type ClaimResult =
  | { run: true; task: TaskRecord }
  | { run: false; why: 'gone' | 'finished' | 'expired' | 'revoked' | 'lost' };

export type EndState = Exclude<State, 'STARTED'>;

export interface EndFields {
  result?: string;
  errorType?: string;
  errorMessage?: string;
  traceback?: string;
  /** RETRY: when the next attempt is due (ms). */
  nextAttemptAt?: number;
}

export type FinishResult = { written: true; state: State; version: number } | { written: false; state: string };

export class AttemptStore {
  constructor(
    private readonly redis: Redis,
    private readonly worker: string,
    private readonly limits: { resultTtlMs: number; eventLogCap: number },
  ) {}

  async claim(d: Delivery, token: string): Promise<ClaimResult> {
    const reply = (await runScript(
      this.redis,
      'claim',
      [keys.task(d.queue, d.id), keys.events(d.queue, d.id), keys.stream(d.queue), keys.exclusive(d.queue, d.ekey)],
      [
        d.id,
        d.msgId,
        CONSUMER_GROUP,
        this.worker,
        token,
        Date.now(),
        channels.events(d.queue),
        this.limits.eventLogCap,
        this.limits.resultTtlMs,
      ],
    )) as [string, string[]?];
    if (reply[0] === 'run') return { run: true, task: parseRecord(pairsToHash(reply[1] ?? [])) };
    return { run: false, why: reply[0] as 'gone' };
  }

  progress(d: Delivery, token: string, progressJson: string): Promise<unknown> {
    return runScript(
      this.redis,
      'progress',
      [keys.task(d.queue, d.id), keys.events(d.queue, d.id)],
      [token, progressJson, Date.now(), channels.events(d.queue), this.limits.eventLogCap],
    );
  }

  async finish(d: Delivery, token: string, state: EndState, fields: EndFields): Promise<FinishResult> {
    const pairs: string[] = [];
    // No error fields to clear on SUCCESS: the claim that began this attempt cleared them.
    if (state === 'SUCCESS') pairs.push('result', fields.result ?? 'null');
    else if (fields.errorType) {
      pairs.push('err_type', fields.errorType, 'err_msg', fields.errorMessage ?? '', 'err_tb', fields.traceback ?? '');
    }
    const reply = (await runScript(
      this.redis,
      'finish',
      [keys.task(d.queue, d.id), keys.events(d.queue, d.id), keys.stream(d.queue), keys.exclusive(d.queue, d.ekey), keys.scheduled(d.queue)],
      [
        d.id,
        d.msgId,
        CONSUMER_GROUP,
        token,
        state,
        Date.now(),
        channels.events(d.queue),
        this.limits.eventLogCap,
        this.limits.resultTtlMs,
        fields.nextAttemptAt ?? 0,
        ...pairs,
      ],
    )) as [string, string, number?];
    if (reply[0] === 'ok') return { written: true, state: reply[1] as State, version: Number(reply[2]) };
    return { written: false, state: reply[1] ?? 'missing' };
  }
}
