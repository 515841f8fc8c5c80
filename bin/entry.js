// What runs a taskwire command: the build in dist/ (`npm run build`, which `npm install` runs
// in a checkout) when it is at least as new as every source file, so neither the command nor
// its handler threads load a TypeScript compiler; in a checkout whose source changed since
// the build, the TypeScript source through tsx (a development dependency), so a stale build
// is never run. Used by bin/taskwire.js and by the tests, which start taskwire as users do.
import { readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const at = (path) => fileURLToPath(new URL(`../${path}`, import.meta.url));
export const BUILT_MAIN = at('dist/src/cli/main.js');

function newest(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = `${dir}/${e.name}`;
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/** Whether dist/ holds a build at least as new as src/ and gen/. */
export function buildIsFresh() {
  try {
    return statSync(BUILT_MAIN).mtimeMs >= Math.max(newest(at('src')), newest(at('gen')));
  } catch {
    return false;
  }
}

/** The Node arguments that run the taskwire CLI (before the command's own arguments). */
export function entryArgs(fresh = buildIsFresh()) {
  if (fresh) return [BUILT_MAIN];
  let tsx;
  try {
    tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  } catch {
    throw new Error('dist/ is missing or older than src/; run `npm run build` (or `npm install`) first');
  }
  return ['--import', tsx, at('src/cli/main.ts')];
}
