/**
 * The histogram bucket bounds of the outcome counters, shared by the scripts that count
 * (they are given the bounds in their prelude) and by /metrics, which reports them.
 */

/** Histogram bucket bounds, seconds (the scripts count in ms against the same bounds). */
export const HISTOGRAM_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];

/** The bounds as a Lua table, for the script prelude. */
export function histogramPrelude(): string {
  return `local HISTOGRAM_MS = {${HISTOGRAM_SECONDS.map((s) => Math.round(s * 1000)).join(', ')}}\n`;
}
