/**
 * Task ids. Ids of the default queue are bare UUIDv7s (time-ordered, as Celery users
 * expect a UUID); ids of another queue carry it as `<queue>/<uuid>`, so that any id
 * alone finds its record without a lookup.
 */
import { randomBytes } from './random.js';

export const DEFAULT_QUEUE = 'default';
const QUEUE_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isValidQueueName(queue: string): boolean {
  return QUEUE_NAME.test(queue);
}

function uuidv7(now = Date.now()): string {
  const b = randomBytes(16);
  b.writeUIntBE(now, 0, 6);
  b[6] = (b[6]! & 0x0f) | 0x70;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export function newTaskId(queue: string): string {
  const uuid = uuidv7();
  return queue === DEFAULT_QUEUE ? uuid : `${queue}/${uuid}`;
}

/** The queue of a task id, or undefined when the string is not a task id. */
export function queueOf(id: string): string | undefined {
  const slash = id.indexOf('/');
  if (slash < 0) return UUID.test(id) ? DEFAULT_QUEUE : undefined;
  const queue = id.slice(0, slash);
  return isValidQueueName(queue) && UUID.test(id.slice(slash + 1)) ? queue : undefined;
}
