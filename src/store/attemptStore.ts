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

/** At most this many claims per script call (one call blocks Redis while it runs). */
const MAX_CLAIMS = 128;

interface PendingClaim {
  d: Delivery;
  token: string;
  resolve: (r: ClaimResult) => void;
  reject: (err: unknown) => void;
}

export class AttemptStore {
  /** Claims asked for in this tick, by queue: they go to Redis as one script call. */
  private readonly claims = new Map<string, PendingClaim[]>();
  private claimsQueued = false;

  constructor(
    private readonly redis: Redis,
    private readonly worker: string,
    private readonly limits: { resultTtlMs: number; eventLogCap: number },
  ) {}

  /** Begin an attempt (see claim-n.lua). Claims made together (the messages of one read)
   * share a script call, sent at the end of the current microtask run. */
  claim(d: Delivery, token: string): Promise<ClaimResult> {
    return new Promise((resolve, reject) => {
      const pending = this.claims.get(d.queue);
      if (pending) pending.push({ d, token, resolve, reject });
      else this.claims.set(d.queue, [{ d, token, resolve, reject }]);
      if (!this.claimsQueued) {
        this.claimsQueued = true;
        queueMicrotask(this.sendClaims);
      }
    });
  }

  private readonly sendClaims = () => {
    this.claimsQueued = false;
    for (const [queue, pending] of this.claims) {
      for (let i = 0; i < pending.length; i += MAX_CLAIMS) void this.claimBatch(queue, pending.slice(i, i + MAX_CLAIMS));
    }
    this.claims.clear();
  };

  private async claimBatch(queue: string, batch: PendingClaim[]): Promise<void> {
    const keyList = [keys.stream(queue)];
    const args: (string | number)[] = [
      CONSUMER_GROUP,
      this.worker,
      Date.now(),
      channels.events(queue),
      this.limits.eventLogCap,
      this.limits.resultTtlMs,
    ];
    for (const { d, token } of batch) {
      keyList.push(keys.task(queue, d.id), keys.events(queue, d.id), keys.exclusive(queue, d.ekey));
      args.push(d.id, d.msgId, token);
    }
    let replies: [string, string[]?][];
    try {
      replies = (await runScript(this.redis, 'claim', keyList, args)) as [string, string[]?][];
    } catch (err) {
      for (const p of batch) p.reject(err);
      return;
    }
    batch.forEach((p, i) => {
      const reply = replies[i] ?? ['gone'];
      try {
        if (reply[0] === 'run') p.resolve({ run: true, task: parseRecord(pairsToHash(reply[1] ?? [])) });
        else p.resolve({ run: false, why: reply[0] as 'gone' });
      } catch (err) {
        p.reject(err);
      }
    });
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
