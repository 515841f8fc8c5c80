#!/usr/bin/env node
// The taskwire command. Runs the build in dist/ (`npm run build`, which `npm install` runs in a
// checkout) when it is at least as new as every source file, so neither the command nor its
// handler threads load a TypeScript compiler. In a checkout whose source changed since the
// build, it runs the TypeScript source through tsx (a development dependency), so a stale
// build is never run.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const at = (path) => fileURLToPath(new URL(`../${path}`, import.meta.url));
const built = at('dist/src/cli/main.js');

function newest(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = `${dir}/${e.name}`;
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

function buildIsFresh() {
  try {
    return statSync(built).mtimeMs >= Math.max(newest(at('src')), newest(at('gen')));
  } catch {
    return false;
  }
}

const nodeFlags = JSON.parse(readFileSync(at('bin/node-flags.json'), 'utf8'))[process.argv[2]] ?? [];
const fresh = buildIsFresh();
if (fresh && nodeFlags.length === 0) {
  // A client command (or any without flags of its own) runs in this process: one Node start.
  await import(pathToFileURL(built).href);
} else {
  let args;
  if (fresh) {
    args = [built];
  } else {
    let tsx;
    try {
      tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
    } catch {
      console.error('taskwire: dist/ is missing or older than src/; run `npm run build` (or `npm install`) first');
      process.exit(1);
    }
    args = ['--import', tsx, at('src/cli/main.ts')];
  }
  const child = spawn(process.execPath, [...nodeFlags, ...args, ...process.argv.slice(2)], { stdio: 'inherit' });
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}
