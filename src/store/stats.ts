/**
 * A queue's outcome counters and time histograms ({@link keys.stats}): kept by the scripts
 * that write a task's state (`count_end`, `count_start` in scripts/lib.lua), in the queue's
 * slot, and read here when /metrics is scraped. So no API server needs to hear every
 * change of every task to count them, and the figures are the same whichever server is
 * scraped.
 */
import { execBatched, type RedisClient } from '../redis.js';
import { queueName } from '../ids.js';
import { HISTOGRAM_SECONDS } from './histogram.js';
import { keys } from './keys.js';

/** Counts per bucket (index as the scripts write it: 1.. a bound, 0 beyond the last) and the total ms. */
export interface TimeCounts {
  buckets: Map<number, number>;
  sumMs: number;
}

export interface QueueStats {
  /** Ends by state, then task name (the ones with a run time included). */
  ended: Map<string, Map<string, number>>;
  /** Run times of attempts that ended, by state, then task name. */
  run: Map<string, Map<string, TimeCounts>>;
  /** Waits before an attempt started, by task name. */
  wait: Map<string, TimeCounts>;
}

const times = (m: Map<string, TimeCounts>, key: string): TimeCounts => {
  let t = m.get(key);
  if (!t) m.set(key, (t = { buckets: new Map(), sumMs: 0 }));
  return t;
};
const inner = <V>(m: Map<string, Map<string, V>>, key: string): Map<string, V> => {
  let v = m.get(key);
  if (!v) m.set(key, (v = new Map()));
  return v;
};

/** The fields of a stats hash, read into counts (added to `out`'s, when given). */
export function parseStats(hash: Record<string, string>, out: QueueStats = { ended: new Map(), run: new Map(), wait: new Map() }): QueueStats {
  const addEnd = (state: string, task: string, n: number) => {
    const byTask = inner(out.ended, state);
    byTask.set(task, (byTask.get(task) ?? 0) + n);
  };
  for (const [field, text] of Object.entries(hash)) {
    const n = Number(text);
    if (!Number.isFinite(n)) continue;
    const p = field.split('\n');
    if (p[0] === 'e' && p.length === 3) addEnd(p[1]!, p[2]!, n);
    else if (p[0] === 'r' && p.length === 4) {
      addEnd(p[1]!, p[2]!, n);
      const t = times(inner(out.run, p[1]!), p[2]!);
      t.buckets.set(Number(p[3]), (t.buckets.get(Number(p[3])) ?? 0) + n);
    } else if (p[0] === 'rs' && p.length === 3) times(inner(out.run, p[1]!), p[2]!).sumMs += n;
    else if (p[0] === 'w' && p.length === 3) {
      const t = times(out.wait, p[1]!);
      t.buckets.set(Number(p[2]), (t.buckets.get(Number(p[2])) ?? 0) + n);
    } else if (p[0] === 'ws' && p.length === 2) times(out.wait, p[1]!).sumMs += n;
  }
  return out;
}

/** The stats of each queue, in one pipeline per slot (a queue whose read failed is left out); the
 * partitions of a partitioned queue add up under the queue's name. */
export async function readStats(redis: RedisClient, queues: readonly string[]): Promise<Map<string, QueueStats>> {
  const replies = await execBatched(
    redis,
    queues.map((q) => ({ key: keys.stats(q), add: (p) => p.hgetall(keys.stats(q)) })),
  );
  const out = new Map<string, QueueStats>();
  queues.forEach((q, i) => {
    const [err, hash] = replies[i] ?? [];
    if (err || !hash) return;
    const name = queueName(q);
    out.set(name, parseStats(hash as Record<string, string>, out.get(name)));
  });
  return out;
}

/** Cumulative bucket counts for each bound, then the count (+Inf). */
export function cumulative(t: TimeCounts): { bounds: number[]; count: number } {
  const bounds: number[] = [];
  let sum = 0;
  for (let i = 1; i <= HISTOGRAM_SECONDS.length; i++) {
    sum += t.buckets.get(i) ?? 0;
    bounds.push(sum);
  }
  return { bounds, count: sum + (t.buckets.get(0) ?? 0) };
}
