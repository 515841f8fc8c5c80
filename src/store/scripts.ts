/**
 * The Lua scripts in ./scripts, loaded once per process and called by name.
 * A file `name-N.lua` takes N keys; `name-n.lua` takes as many as each call gives (a script
 * that names every key of each task it handles, so a cluster can route it). Each script is prefixed with the state machine
 * (states.ts) and the shared helpers (lib.lua, then workflow.lua: a file without the `-N`
 * suffix is a library), so every writer enforces one table.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ChainableCommander } from 'ioredis';
import type { RedisClient } from '../redis.js';
import { luaPrelude } from './states.js';
import { histogramPrelude } from './histogram.js';

export type ScriptName = 'enqueue' | 'attempt' | 'progress' | 'cancel' | 'promote' | 'trim' | 'reap' | 'workflow_start' | 'fire' | 'schedule_edit';

interface ScriptSource {
  /** Undefined: the call gives the count (ioredis then takes it as the first argument). */
  numberOfKeys?: number;
  lua: string;
}

const dir = fileURLToPath(new URL('./scripts/', import.meta.url));
let sources: Map<ScriptName, ScriptSource> | undefined;

function loadSources(): Map<ScriptName, ScriptSource> {
  if (sources) return sources;
  const lib = luaPrelude() + histogramPrelude() + readFileSync(`${dir}lib.lua`, 'utf8') + readFileSync(`${dir}workflow.lua`, 'utf8');
  sources = new Map();
  for (const file of readdirSync(dir)) {
    const m = /^([a-z_]+)-(\d+|n)\.lua$/.exec(file);
    if (!m) continue;
    const lua = `${lib}\n${readFileSync(dir + file, 'utf8')}`;
    sources.set(m[1] as ScriptName, m[2] === 'n' ? { lua } : { numberOfKeys: Number(m[2]), lua });
  }
  return sources;
}

const installed = new WeakSet<RedisClient>();

/** Define every script as a command on this connection (EVALSHA, EVAL on NOSCRIPT). */
export function installScripts(redis: RedisClient): void {
  if (installed.has(redis)) return;
  for (const [name, src] of loadSources()) redis.defineCommand(commandName(name), src);
  installed.add(redis);
}

function commandName(name: ScriptName): string {
  return `taskwire_${name}`;
}

type Arg = string | number;

/** Run a script on a connection (after installScripts) or queue it on a pipeline of one. */
export function runScript(
  client: RedisClient | ChainableCommander,
  name: ScriptName,
  keys: readonly string[],
  args: readonly Arg[],
): Promise<unknown> {
  const source = loadSources().get(name);
  if (!source) throw new Error(`no script ${name}`);
  if (source.numberOfKeys !== undefined && source.numberOfKeys !== keys.length) {
    throw new Error(`script ${name} takes ${source.numberOfKeys} keys, got ${keys.length}`);
  }
  if (source.numberOfKeys === undefined && keys.length === 0) throw new Error(`script ${name} takes at least one key, got none`);
  const fn = (client as unknown as Record<string, (...a: Arg[]) => Promise<unknown>>)[commandName(name)];
  if (!fn) throw new Error(`script ${name} is not installed on this connection`);
  if (source.numberOfKeys === undefined) return fn.call(client, keys.length, ...keys, ...args);
  return fn.call(client, ...keys, ...args);
}
