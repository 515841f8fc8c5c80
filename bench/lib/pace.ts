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
