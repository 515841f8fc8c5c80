/**
 * A steady producer: call `one(i)` every `interval` ms, `total` times, without waiting for
 * each to finish. Returns how many calls went out more than one interval late (the
 * producer could not keep the pace), after every call has settled.
 */
export async function paced(total: number, interval: number, one: (i: number) => Promise<void>): Promise<number> {
  const pending: Promise<void>[] = [];
  let late = 0;
  const t0 = performance.now() + 50;
  for (let i = 0; i < total; i++) {
    const wait = t0 + i * interval - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    else if (wait < -interval) late++;
    pending.push(one(i));
  }
  await Promise.all(pending);
  return late;
}

export interface SteadyRate {
  /** Calls per second. */
  rate: number;
  /** Measured after the warm-up. */
  seconds: number;
  warmupSeconds: number;
  /** The first part of the warm-up, reported apart. */
  coldSeconds: number;
}

/**
 * The end-to-end scenario: `one(i)` at a steady `rate` for `warmupSeconds` + `seconds`, each
 * returning its latency (ms). The latencies after the warm-up (`samples`), those of its first
 * `coldSeconds` (`cold`), and how many calls went out late.
 */
export async function pacedLatencies(
  p: SteadyRate,
  one: (i: number) => Promise<number>,
): Promise<{ samples: number[]; cold: number[]; late: number }> {
  const samples: number[] = [];
  const cold: number[] = [];
  const warmup = Math.round(p.rate * p.warmupSeconds);
  const coldEnd = Math.round(p.rate * p.coldSeconds);
  const late = await paced(Math.round(p.rate * (p.seconds + p.warmupSeconds)), 1000 / p.rate, async (i) => {
    const ms = await one(i);
    if (i >= warmup) samples.push(ms);
    else if (i < coldEnd) cold.push(ms);
  });
  return { samples, cold, late };
}
