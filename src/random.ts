/**
 * Random bytes for ids (task ids, trace and span ids), drawn from the CSPRNG 4 KiB at a
 * time: one call into it per few hundred ids instead of one per id (a call costs tens of
 * microseconds; an id is made for every Start and every attempt).
 */
import { randomFillSync } from 'node:crypto';

const pool = Buffer.alloc(4096);
let used = pool.length;

/** `n` (at most 4096) fresh random bytes, in a buffer of their own. */
export function randomBytes(n: number): Buffer {
  if (used + n > pool.length) {
    randomFillSync(pool);
    used = 0;
  }
  return Buffer.from(pool.subarray(used, (used += n)));
}
