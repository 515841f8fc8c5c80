#!/usr/bin/env node
// The taskwire command. Runs the build in dist/ (npm run build) when there is one at least
// as new as every source file, so handler threads start without a TypeScript compiler
// (faster, ~20 MB less per thread); otherwise runs the TypeScript source through tsx, so
// the package works straight from a checkout and a stale build is never run.
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

let args;
if (buildIsFresh()) {
  args = [built];
} else {
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  args = ['--import', tsx, at('src/cli/main.ts')];
}
const nodeFlags = JSON.parse(readFileSync(at('bin/node-flags.json'), 'utf8'))[process.argv[2]] ?? [];
const child = spawn(process.execPath, [...nodeFlags, ...args, ...process.argv.slice(2)], { stdio: 'inherit' });
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
