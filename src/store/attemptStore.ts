/**
 * The worker's writes to task records: begin an attempt, report progress, end it.
 * Each end also acknowledges the queue message in the same step.
 */
import { randomUUID } from 'node:crypto';
import type { RedisClient } from '../redis.js';
import { isConnectionError } from '../redis.js';
import type { Waiting } from './keyedBatcher.js';
import { CONSUMER_GROUP, channels, keys } from './keys.js';
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

export type ClaimResult = { run: true; task: RunnableTask } | { run: false; why: 'gone' | 'finished' | 'expired' | 'revoked' | 'lost' };

/** A message handed to this worker, with the token of the attempt asked for and the claim's outcome. */
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
}

/** A take: the non-blocking read of the queue's new messages that goes out with the turn's calls. */
type Take = () => Promise<Delivery[]>;

/** What the worker asked of one queue in this turn of its event loop. */
interface QueueTurn {
  finishes: Waiting<Finish, FinishResult>[];
  claims: Waiting<Claim, ClaimResult>[];
  /** At most one per queue and turn: the fetch loop's. */
  take?: Waiting<Take, Delivery[]>;
}

/**
 * At most this many finishes and claims per script call. One call blocks Redis while it
 * runs, and a busy turn at high concurrency goes as a few calls rather than one: the worker
 * runs what the first call began while Redis runs the next.
 */
const MAX_PER_CALL = 64;

/** At most this many nonces of answered calls are named in one call (the rest go with the next). */
const MAX_ANSWERED_PER_CALL = 256;

type ClaimReply = [string, string[]?];
type FinishReply = [string, string?, number?];
type Replies = [FinishReply[], ClaimReply[]];

/**
 * The writes a worker asks for in one turn of its event loop (finishes and claims, see
 * attempt-n.lua) go to Redis together, one script call per queue (a few when the turn is
 * busy, MAX_PER_CALL), followed on the same connection, in the same write, by the turn's
 * non-blocking reads of new messages (takes): tasks that end together are written
 * together, the slots they free are filled from the same round trip (what a take read is
 * claimed by the next turn's call), and no result waits for a task still running. Each
 * caller gets its own outcome.
 */
export class AttemptStore {
  private turn = new Map<string, QueueTurn>();
  private scheduled = false;
  private readonly atSend: (() => void)[] = [];
  /** Per queue: nonces of calls whose replies arrived, for the next call to drop. */
  private readonly answered = new Map<string, string[]>();
  /** How long Redis keeps a call's reply for a call sent again: past a lease, what the call
   * began is another worker's to take over anyway. */
  private readonly keepMs: number;

  constructor(
    private readonly redis: RedisClient,
    private readonly worker: string,
    private readonly limits: { resultTtlMs: number; eventLogCap: number; leaseMs: number },
  ) {
    this.keepMs = 2 * limits.leaseMs;
  }

  /** End the attempt: its finish is queued for this turn's call when this returns. */
  finish(d: Delivery, token: string, state: EndState, fields: EndFields): Promise<FinishResult> {
    return new Promise((resolve, reject) => this.queue(d.queue).finishes.push({ item: { d, token, state, fields }, resolve, reject }));
  }

  /** Begin an attempt of a message handed to this worker; the caller gets its own outcome. */
  claim(d: Delivery, token: string): Promise<ClaimResult> {
    return new Promise((resolve, reject) => this.queue(d.queue).claims.push({ item: { d, token }, resolve, reject }));
  }

  /**
   * Run `read` (a non-blocking read of the queue's new messages for this worker, on this
   * store's connection) right after this turn's calls for the queue are sent, so it goes out
   * in the same write and reads after their finishes. Resolves with what it read, for the
   * caller to claim (in the next turn's call).
   */
  take(queue: string, read: () => Promise<Delivery[]>): Promise<Delivery[]> {
    return new Promise((resolve, reject) => {
      const q = this.queue(queue);
      if (q.take) return reject(new Error(`a take of queue ${queue} is already pending in this turn`));
      q.take = { item: read, resolve, reject };
    });
  }

  /**
   * Run `fn` as this turn's writes are about to go out, so that what it asks for goes with
   * them: the worker sizes its take by every slot the turn's finishes free, not just the
   * first. (Starts a turn when none is pending.)
   */
  atTurnEnd<T>(fn: () => Promise<T>): Promise<T> {
    return new Promise((resolve, reject) => {
      this.atSend.push(() => fn().then(resolve, reject));
      this.schedule();
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

  private queue(name: string): QueueTurn {
    let q = this.turn.get(name);
    if (!q) {
      q = { finishes: [], claims: [] };
      this.turn.set(name, q);
    }
    this.schedule();
    return q;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.flush);
  }

  /**
   * Send the turn. Every finish reaches Redis before any claim (a slot freed on one queue
   * may begin a task of another), so the finishes of all queues but one go first on
   * their own; that one carries its queue's claims and takes; the other queues' follow.
   * The connection keeps this order (commands go out as issued).
   */
  private readonly flush = (): void => {
    for (const fn of this.atSend.splice(0)) fn();
    this.scheduled = false;
    const turn = [...this.turn];
    this.turn = new Map();
    const begins = (q: QueueTurn) => q.claims.length > 0 || q.take !== undefined;
    const finishing = turn.filter(([, q]) => q.finishes.length > 0);
    const carrier = finishing.find(([, q]) => begins(q)) ?? finishing.at(-1);
    for (const [name, q] of finishing) if (q !== carrier?.[1]) this.send(name, { finishes: q.finishes, claims: [] });
    if (carrier) this.send(carrier[0], carrier[1]);
    for (const [name, q] of turn) if (q !== carrier?.[1] && begins(q)) this.send(name, { finishes: [], claims: q.claims, take: q.take });
  };

  /** One script call per MAX_PER_CALL finishes and claims, in order, then the take's read. */
  private send(queue: string, q: QueueTurn): void {
    const ops = q.finishes.length + q.claims.length;
    for (let from = 0; from < ops; from += MAX_PER_CALL) {
      const finishes = q.finishes.slice(from, from + MAX_PER_CALL);
      const claims = q.claims.slice(Math.max(0, from - q.finishes.length), Math.max(0, from + MAX_PER_CALL - q.finishes.length));
      void this.call(queue, finishes, claims);
    }
    if (q.take) {
      const { item: read, resolve, reject } = q.take;
      read().then(resolve, reject);
    }
  }

  /** Nonces whose replies need no longer be kept; the next call on the queue drops them. */
  private forget(queue: string, nonces: string[]): void {
    if (nonces.length === 0) return;
    const list = this.answered.get(queue);
    if (list) list.push(...nonces);
    else this.answered.set(queue, nonces);
  }

  /**
   * Run one attempt call until it is answered. A call whose connection dropped is sent again
   * with the same nonce, so if Redis ran it already it answers with its first reply (ioredis
   * also sends again by itself what was in flight when it reconnects). Given up once Redis
   * may no longer keep that reply, or when the connection was closed for good.
   */
  private async runCall(keyList: string[], args: (string | number)[]): Promise<Replies> {
    const since = Date.now();
    for (;;) {
      try {
        const reply = await runScript(this.redis, 'attempt', keyList, args);
        return typeof reply === 'string' ? parseKept(reply) : (reply as Replies);
      } catch (err) {
        const closed = this.redis.status === 'end';
        if (!isConnectionError(err) || closed || Date.now() - since > this.keepMs / 2) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  private async call(queue: string, finishes: Waiting<Finish, FinishResult>[], claims: Waiting<Claim, ClaimResult>[]): Promise<void> {
    const nonce = randomUUID();
    const answered = (this.answered.get(queue) ?? []).splice(0, MAX_ANSWERED_PER_CALL);
    const keyList = [keys.stream(queue), keys.scheduled(queue), keys.replies(queue, this.worker), keys.stats(queue)];
    const args: (string | number)[] = [
      CONSUMER_GROUP,
      this.worker,
      Date.now(),
      channels.events(queue),
      this.limits.eventLogCap,
      this.limits.resultTtlMs,
      finishes.length,
      claims.length,
      nonce,
      this.keepMs,
      answered.length,
      ...answered,
    ];
    for (const { item } of finishes) {
      const { d, token, state, fields } = item;
      keyList.push(...taskKeys(d));
      args.push(d.id, d.msgId, token, state, fields.nextAttemptAt ?? 0);
      // No error fields to clear on SUCCESS: the claim that began this attempt cleared them.
      if (state === 'SUCCESS') args.push(2, 'result', fields.result ?? 'null');
      else if (fields.errorType) {
        args.push(6, 'err_type', fields.errorType, 'err_msg', fields.errorMessage ?? '', 'err_tb', fields.traceback ?? '');
      } else args.push(0);
    }
    for (const { item } of claims) {
      const { d, token } = item;
      keyList.push(...taskKeys(d));
      args.push(d.id, d.msgId, token);
    }

    let replies: Replies;
    try {
      replies = await this.runCall(keyList, args);
    } catch (err) {
      this.forget(queue, answered);
      for (const w of [...finishes, ...claims]) w.reject(err);
      return;
    }
    this.forget(queue, [nonce]);
    const [finished, claimed] = replies;
    // The tasks begun are handed over now and the ones finished after this phase of the
    // event loop: a begun task goes to a handler thread (posted once this run of microtasks
    // is over), and what a finished one's caller does next (its log line) need not delay that.
    claims.forEach((w, i) => {
      const r = claimResult(w.item.d.id, claimed[i]);
      if (r instanceof Error) w.reject(r);
      else w.resolve(r);
    });
    if (finishes.length > 0) {
      setImmediate(() => {
        for (const [i, w] of finishes.entries()) w.resolve(finishResult(finished[i]));
      });
    }
  }
}

/** The keys of a task that an attempt call touches: its record, event log and exclusive key
 * (the queue's bare exclusive prefix when it has none: a key never written). */
function taskKeys(d: Delivery): [string, string, string] {
  return [keys.task(d.queue, d.id), keys.events(d.queue, d.id), keys.exclusive(d.queue, d.ekey)];
}

/** The reply of a call sent again: the JSON of its first reply (an empty list reads as {}). */
function parseKept(json: string): Replies {
  const parsed = JSON.parse(json) as unknown[];
  const list = <T>(x: unknown): T[] => (Array.isArray(x) ? (x as T[]) : []);
  return [list<FinishReply>(parsed[0]), list<ClaimReply>(parsed[1])];
}

function finishResult(reply: FinishReply = ['gone']): FinishResult {
  if (reply[0] === 'ok') return { written: true, state: reply[1] as State, version: Number(reply[2]) };
  return { written: false, state: reply[1] ?? 'missing' };
}

function claimResult(id: string, reply: ClaimReply = ['gone']): ClaimResult | Error {
  if (reply[0] !== 'run') return { run: false, why: reply[0] as 'gone' };
  try {
    return { run: true, task: parseRunnable(id, reply[1] ?? []) };
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}
