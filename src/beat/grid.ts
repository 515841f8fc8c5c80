/**
 * When a schedule's ticks fall. A period (`every`) ticks on multiples of itself since the
 * Unix epoch, as cron ticks on its fields, so every process computes the same grid from the
 * definition alone, with nothing stored to agree on.
 */
import { CronExpressionParser } from 'cron-parser';
import { invalid, quote } from '../errors.js';

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
  const cron = when.cron!.trim();
  const fields = cron.split(/\s+/).length;
  if (!cron.startsWith('@') && fields !== 5 && fields !== 6) {
    throw invalid('schedule.cron', `${quote(cron)} has ${fields} field${fields === 1 ? '' : 's'}; give 5 (minute hour day month weekday) or 6 (seconds first)`);
  }
  try {
    CronExpressionParser.parse(cron, { tz, currentDate: new Date() }).next();
  } catch (err) {
    throw invalid('schedule.cron', `${quote(cron)} is not a cron expression: ${(err as Error).message}`);
  }
}

/** The first tick strictly after `after` (ms). */
export function nextTick(when: When, after: number): number {
  if (when.everyMs !== undefined) return (Math.floor(after / when.everyMs) + 1) * when.everyMs;
  const expr = CronExpressionParser.parse(when.cron!.trim(), { tz: when.timezone || 'UTC', currentDate: new Date(after) });
  return expr.next().getTime();
}
