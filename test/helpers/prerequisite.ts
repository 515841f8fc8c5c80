/**
 * A suite that needs something outside Node (a browser, a Go toolchain) skips, saying why,
 * on a machine without it; under CI (`CI=true`) the missing tool is a failure instead, so a
 * suite cannot stop running there unnoticed.
 */
import { describe, it } from 'vitest';

export const IN_CI = process.env.CI === 'true' || process.env.CI === '1';

/**
 * Whether `suite` can run. `missing` is why it cannot (undefined: it can). When it cannot,
 * this warns and returns false, or under CI registers a failing test that says what is missing.
 */
export function prerequisite(suite: string, missing: string | undefined): boolean {
  if (missing === undefined) return true;
  if (IN_CI) {
    describe(suite, () => {
      it('has what it needs to run (required under CI)', () => {
        throw new Error(`${suite} cannot run under CI: ${missing}`);
      });
    });
  } else {
    console.warn(`SKIPPED ${suite}: ${missing}`);
  }
  return false;
}
