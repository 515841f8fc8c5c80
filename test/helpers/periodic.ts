/** Reading what a schedule did: its runs (tasks whose schedule_id names it), by tick. */
import { expect } from 'vitest';
import { Code, ConnectError, type Task, type TaskwireClient } from '../../src/client/index.js';

export interface Run {
  id: string;
  /** The tick it was started for, from its idempotency key `schedule:<id>:<tick>`. */
  tick: number;
  created: number;
  started?: number;
  finished?: number;
  task: Task;
}

const ms = (ts: { seconds: bigint; nanos: number } | undefined) => (ts ? Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6) : undefined);

/** Every run of schedule `id` on `queue`, oldest tick first. */
export async function runsOf(client: TaskwireClient, id: string, queue = 'default'): Promise<Run[]> {
  const runs: Run[] = [];
  let pageToken = '';
  do {
    const page = await client.rpc.listTasks({ queue, pageSize: 500, pageToken });
    for (const t of page.tasks) {
      if (t.scheduleId !== id) continue;
      const m = /^schedule:(.+):(\d+)$/.exec(t.idempotencyKey);
      expect(m?.[1], `run ${t.id} names its schedule and tick`).toBe(id);
      runs.push({ id: t.id, tick: Number(m![2]), created: ms(t.createdAt)!, started: ms(t.startedAt), finished: ms(t.finishedAt), task: t });
    }
    pageToken = page.nextPageToken;
  } while (pageToken);
  return runs.sort((a, b) => a.tick - b.tick);
}

/** Poll (every 100 ms) until `check` returns a value; that value. UNAVAILABLE (the API
 * server's Redis away for a moment) is a reason to look again. */
export async function eventually<T>(check: () => Promise<T | undefined | false>, what: string, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await check().catch((err: unknown) => {
      if (err instanceof ConnectError && err.code === Code.Unavailable) return undefined;
      throw err;
    });
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Wait until schedule `id` has at least `n` runs; them. */
export function runsAtLeast(client: TaskwireClient, id: string, n: number, queue = 'default', timeoutMs = 30_000): Promise<Run[]> {
  return eventually(
    async () => {
      const runs = await runsOf(client, id, queue);
      return runs.length >= n && runs;
    },
    `${n} runs of schedule ${id}`,
    timeoutMs,
  );
}

/**
 * Each tick exactly once: no tick has two runs, and after each run the next one is the
 * first grid point after the later of its tick and the moment it was started (so, with
 * the processes up, simply the next grid point: none missing).
 */
export function expectEachTickOnce(runs: Run[], gridMs: number): void {
  const ticks = runs.map((r) => r.tick);
  expect(new Set(ticks).size, `ticks ${ticks.join(',')}`).toBe(ticks.length);
  for (const r of runs) expect(r.tick % gridMs, `tick ${r.tick} is on the grid`).toBe(0);
  for (let i = 0; i + 1 < runs.length; i++) {
    const after = Math.max(runs[i]!.tick, runs[i]!.created);
    expect(runs[i + 1]!.tick, `the tick after ${runs[i]!.tick} (run created at ${runs[i]!.created})`).toBe((Math.floor(after / gridMs) + 1) * gridMs);
  }
}
