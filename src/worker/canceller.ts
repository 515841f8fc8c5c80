/**
 * Hears the control channel of each queue: cancel requests for running tasks
 * (`<id>\n<abort|terminate>`; a missed one is caught by the next lease renewal, which reads
 * the same flag from the record) and countdowns (`due\n<ms>`), so the scheduler wakes when
 * one is due instead of polling.
 */
import type { Redis } from 'ioredis';
import { channels } from '../store/keys.js';

export type CancelMode = 'abort' | 'terminate';

export async function listenForCancels(
  sub: Redis,
  queues: readonly string[],
  onCancel: (id: string, mode: CancelMode) => void,
  onScheduled: (dueMs: number) => void = () => {},
): Promise<void> {
  sub.on('message', (_channel: string, payload: string) => {
    const nl = payload.indexOf('\n');
    if (nl < 0) return;
    const head = payload.slice(0, nl);
    const rest = payload.slice(nl + 1);
    if (head === 'due') {
      const due = Number(rest);
      if (Number.isFinite(due)) onScheduled(due);
    } else if (rest === 'abort' || rest === 'terminate') onCancel(head, rest);
  });
  await sub.subscribe(...queues.map((q) => channels.control(q)));
}
