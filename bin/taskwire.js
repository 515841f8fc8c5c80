#!/usr/bin/env node
// The taskwire command: see entry.js for what it runs. Commands with Node flags of their own
// (bin/node-flags.json: the worker, the API server) run in a child process started with
// them; the others (the client commands, dev) in this one, so they cost one Node start.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { BUILT_MAIN, buildIsFresh, entryArgs } from './entry.js';

const nodeFlags = JSON.parse(readFileSync(fileURLToPath(new URL('node-flags.json', import.meta.url)), 'utf8'))[process.argv[2]] ?? [];
const fresh = buildIsFresh();
if (fresh && nodeFlags.length === 0) {
  await import(pathToFileURL(BUILT_MAIN).href);
} else {
  let args;
  try {
    args = entryArgs(fresh);
  } catch (err) {
    console.error(`taskwire: ${err.message}`);
    process.exit(1);
  }
  const child = spawn(process.execPath, [...nodeFlags, ...args, ...process.argv.slice(2)], { stdio: 'inherit' });
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}
