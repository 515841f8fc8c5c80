/**
 * When a schedule's ticks fall. A period (`every`) ticks on multiples of itself since the
 * Unix epoch, as cron ticks on its fields, so every process computes the same grid from the
 * definition alone, with nothing stored to agree on.
 */
import { createRequire } from 'node:module';
import type { CronExpressionParser as Parser } from 'cron-parser';
import { invalid, quote } from '../errors.js';

// Loaded on first use: a process that meets no cron schedule (most workers) never holds it.
const load = createRequire(import.meta.url);
let parser: typeof Parser | undefined;
const cron = (): typeof Parser => (parser ??= (load('cron-parser') as { CronExpressionParser: typeof Parser }).CronExpressionParser);

export const MIN_EVERY_MS = 1000;
export const MAX_EVERY_MS = 366 * 24 * 3600 * 1000;

export interface When {
  everyMs?: number;
  cron?: string;
  timezone?: string;
}

/** Check a schedule's timing before anything reaches Redis (INVALID_ARGUMENT naming the field). */
export function checkWhen(when: When): void {
  const hasEvery = when.everyMs !== undefined;
  const hasCron = when.cron !== undefined && when.cron !== '';
  if (hasEvery === hasCron) {
    throw invalid('schedule.every', hasEvery ? 'give either every or cron, not both' : 'give every (a period such as 10s) or cron (an expression)');
  }
  if (hasEvery) {
    const ms = when.everyMs!;
    if (!Number.isFinite(ms) || ms < MIN_EVERY_MS) throw invalid('schedule.every', 'must be at least 1s');
    if (ms > MAX_EVERY_MS) throw invalid('schedule.every', 'must be at most 366 days; use cron for rarer ticks');
    if (!Number.isInteger(ms)) throw invalid('schedule.every', 'must be a whole number of milliseconds');
    if (when.timezone) throw invalid('schedule.timezone', 'applies to cron schedules only; a period has no time zone');
    return;
  }
  const tz = when.timezone || 'UTC';
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
  } catch {
    throw invalid('schedule.timezone', `${quote(tz)} is not an IANA time zone name (such as UTC or Europe/Paris)`);
  }
  const expr = when.cron!.trim();
  const fields = expr.split(/\s+/).length;
  if (!expr.startsWith('@') && fields !== 5 && fields !== 6) {
    throw invalid(
      'schedule.cron',
      `${quote(expr)} has ${fields} field${fields === 1 ? '' : 's'}; give 5 (minute hour day month weekday) or 6 (seconds first)`,
    );
  }
  try {
    cron().parse(expr, { tz, currentDate: new Date() }).next();
  } catch (err) {
    throw invalid('schedule.cron', `${quote(expr)} is not a cron expression: ${(err as Error).message}`);
  }
}

/** The first tick strictly after `after` (ms). */
export function nextTick(when: When, after: number): number {
  if (when.everyMs !== undefined) return (Math.floor(after / when.everyMs) + 1) * when.everyMs;
  return cron()
    .parse(when.cron!.trim(), { tz: when.timezone || 'UTC', currentDate: new Date(after) })
    .next()
    .getTime();
}
