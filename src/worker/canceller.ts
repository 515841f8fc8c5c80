/**
 * Hears cancel requests for running tasks: the control channel of each queue carries
 * `<id>\n<abort|terminate>`. A missed message is caught by the next lease renewal, which
 * reads the same flag from the record.
 */
import type { Redis } from 'ioredis';
import { channels } from '../store/keys.js';

export type CancelMode = 'abort' | 'terminate';

export async function listenForCancels(
  sub: Redis,
  queues: readonly string[],
  onCancel: (id: string, mode: CancelMode) => void,
): Promise<void> {
  sub.on('message', (_channel: string, payload: string) => {
    const nl = payload.indexOf('\n');
    if (nl < 0) return;
    const mode = payload.slice(nl + 1);
    if (mode === 'abort' || mode === 'terminate') onCancel(payload.slice(0, nl), mode);
  });
  await sub.subscribe(...queues.map((q) => channels.control(q)));
}
