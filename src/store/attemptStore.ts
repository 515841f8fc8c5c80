/**
 * The worker's writes to task records: begin an attempt, report progress, end it.
 * Each is one Lua script; each end also acknowledges the queue message in the same step.
 */
import type { Redis } from 'ioredis';
import { KeyedBatcher } from './keyedBatcher.js';
import { CONSUMER_GROUP, channels, keys, taskKeyParts } from './keys.js';
import { parseRunnable, type RunnableTask } from './record.js';
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
  | { run: true; task: RunnableTask }
  | { run: false; why: 'gone' | 'finished' | 'expired' | 'revoked' | 'lost' };

/** A message read and claimed in one step (see AttemptStore.take). */
export interface Taken {
  d: Delivery;
  token: string;
  claim: ClaimResult | Error;
}

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

interface Claim {
  d: Delivery;
  token: string;
}

interface Finish {
  d: Delivery;
  token: string;
  state: EndState;
  fields: EndFields;
  sent?: () => void;
}

export class AttemptStore {
  /** The claims of one read (asked for in one run of microtasks) share a script call per
   * queue, at most 128 (one call blocks Redis while it runs). */
  private readonly claims = new KeyedBatcher<Claim, ClaimResult>({
    send: (queue, claims) => this.claimBatch(queue, claims),
    schedule: queueMicrotask,
    maxItems: 128,
  });

  /** The finishes of one turn of the event loop share a script call per queue: tasks that
   * end together (their results arrive as separate messages from the handler threads) are
   * written together, and no result waits for a task still running. */
  private readonly finishes = new KeyedBatcher<Finish, FinishResult>({
    send: (queue, finishes) => this.finishBatch(queue, finishes),
    schedule: setImmediate,
    maxItems: 128,
  });

  constructor(
    private readonly redis: Redis,
    private readonly worker: string,
    private readonly limits: { resultTtlMs: number; eventLogCap: number },
  ) {}

  /** Begin an attempt (see claim-n.lua); each caller gets its own outcome. */
  claim(d: Delivery, token: string): Promise<ClaimResult> {
    return this.claims.add(d.queue, { d, token });
  }

  private async claimBatch(queue: string, batch: Claim[]): Promise<(ClaimResult | Error)[]> {
    const keyList = [keys.stream(queue)];
    const args = this.claimArgs(queue, 'given');
    for (const { d, token } of batch) {
      keyList.push(keys.task(queue, d.id), keys.events(queue, d.id), keys.exclusive(queue, d.ekey));
      args.push(d.id, d.msgId, token);
    }
    const replies = (await runScript(this.redis, 'claim', keyList, args)) as ClaimReply[];
    return batch.map((b, i) => claimResult(b.d.id, replies[i]));
  }

  /**
   * Read up to `tokens.length` new messages of the queue for this worker and claim them, in
   * one script call (claim-n.lua's read mode): what a non-blocking XREADGROUP followed by
   * `claim` would do, in one round trip. Issued right after a finish, it shares that
   * finish's round trip too.
   */
  async take(queue: string, tokens: string[]): Promise<Taken[]> {
    const parts = taskKeyParts(queue);
    const args = this.claimArgs(queue, 'read');
    args.push(parts.task, parts.eventsSuffix, parts.exclusive, ...tokens);
    const replies = (await runScript(this.redis, 'claim', [keys.stream(queue)], args)) as [string, string, string, ClaimReply][];
    return replies.map(([msgId, id, ekey, reply], i) => ({
      d: { queue, msgId, id, ekey },
      token: tokens[i]!,
      claim: claimResult(id, reply),
    }));
  }

  private claimArgs(queue: string, mode: 'given' | 'read'): (string | number)[] {
    return [CONSUMER_GROUP, this.worker, Date.now(), channels.events(queue), this.limits.eventLogCap, this.limits.resultTtlMs, mode];
  }

  progress(d: Delivery, token: string, progressJson: string): Promise<unknown> {
    return runScript(
      this.redis,
      'progress',
      [keys.task(d.queue, d.id), keys.events(d.queue, d.id)],
      [token, progressJson, Date.now(), channels.events(d.queue), this.limits.eventLogCap],
    );
  }

  /**
   * End the attempt (see finish-n.lua). `sent` is called once the finish is handed to the
   * connection: a command issued after that reaches Redis after it.
   */
  finish(d: Delivery, token: string, state: EndState, fields: EndFields, sent?: () => void): Promise<FinishResult> {
    return this.finishes.add(d.queue, { d, token, state, fields, sent });
  }

  private async finishBatch(queue: string, batch: Finish[]): Promise<FinishResult[]> {
    const keyList = [keys.stream(queue), keys.scheduled(queue)];
    const args: (string | number)[] = [
      CONSUMER_GROUP,
      Date.now(),
      channels.events(queue),
      this.limits.eventLogCap,
      this.limits.resultTtlMs,
    ];
    for (const { d, token, state, fields } of batch) {
      keyList.push(keys.task(queue, d.id), keys.events(queue, d.id), keys.exclusive(queue, d.ekey));
      args.push(d.id, d.msgId, token, state, fields.nextAttemptAt ?? 0);
      // No error fields to clear on SUCCESS: the claim that began this attempt cleared them.
      if (state === 'SUCCESS') args.push(2, 'result', fields.result ?? 'null');
      else if (fields.errorType) {
        args.push(6, 'err_type', fields.errorType, 'err_msg', fields.errorMessage ?? '', 'err_tb', fields.traceback ?? '');
      } else args.push(0);
    }
    const replying = runScript(this.redis, 'finish', keyList, args);
    for (const f of batch) f.sent?.();
    const replies = (await replying) as [string, string?, number?][];
    return batch.map((_, i): FinishResult => {
      const reply = replies[i] ?? ['gone'];
      if (reply[0] === 'ok') return { written: true, state: reply[1] as State, version: Number(reply[2]) };
      return { written: false, state: reply[1] ?? 'missing' };
    });
  }
}

type ClaimReply = [string, string[]?];

function claimResult(id: string, reply: ClaimReply = ['gone']): ClaimResult | Error {
  if (reply[0] !== 'run') return { run: false, why: reply[0] as 'gone' };
  try {
    return { run: true, task: parseRunnable(id, reply[1] ?? []) };
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}
