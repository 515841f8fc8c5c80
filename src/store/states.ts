/**
 * The task state machine: the one place that says which change of state is allowed.
 * The Lua scripts receive this table as a prelude (see scripts.ts), so Redis enforces
 * exactly what this file says.
 */

export const STATES = ['PENDING', 'STARTED', 'RETRY', 'SUCCESS', 'FAILURE', 'REVOKED'] as const;
export type State = (typeof STATES)[number];

export const TERMINAL_STATES: ReadonlySet<State> = new Set(['SUCCESS', 'FAILURE', 'REVOKED']);

export function isTerminal(state: State): boolean {
  return TERMINAL_STATES.has(state);
}

/** from → the states it may move to. A state may "move" to itself (progress, a new attempt). */
export const TRANSITIONS: Readonly<Record<State, readonly State[]>> = {
  // A waiting task starts, is revoked (cancel, expiry) or fails without running (unknown name).
  PENDING: ['PENDING', 'STARTED', 'REVOKED', 'FAILURE'],
  // A running task reports progress, finishes, is retried, is revoked, is handed back at
  // worker shutdown, or starts again as a new attempt after its worker was lost.
  STARTED: ['STARTED', 'SUCCESS', 'FAILURE', 'RETRY', 'REVOKED', 'PENDING'],
  // A task waiting for its next attempt starts it, is revoked or expires.
  RETRY: ['STARTED', 'REVOKED', 'FAILURE'],
  SUCCESS: [],
  FAILURE: [],
  REVOKED: [],
};

/**
 * Lua source defining `allowed(from, to)` and `is_terminal(state)`. Functions of string
 * comparisons, not tables: a script's top level runs on every call, and building the tables
 * each time cost Redis more than the lookups they save.
 */
export function luaPrelude(): string {
  const anyOf = (v: string, states: readonly State[]) => states.map((s) => `${v} == '${s}'`).join(' or ');
  const branches = STATES.filter((from) => TRANSITIONS[from].length > 0)
    .map((from) => `  if from == '${from}' then return ${anyOf('to', TRANSITIONS[from])} end\n`)
    .join('');
  return (
    `local function allowed(from, to)\n${branches}  return false\nend\n` +
    `local function is_terminal(state)\n  return ${anyOf('state', [...TERMINAL_STATES])}\nend\n`
  );
}
