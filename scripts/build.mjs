// npm run build: compile src/, gen/ and bench/ to dist/ (tsc), copy the files that are not
// TypeScript (Lua scripts, the dashboard's page), and bundle the client commands into one
// module, so that `taskwire status` and its kin load one file instead of a few hundred (the
// ESM loader's cost per module is most of a client command's start).
import { cpSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { build } from 'esbuild';

const root = new URL('..', import.meta.url);
const at = (path) => new URL(path, root).pathname;

rmSync(at('dist'), { recursive: true, force: true });
execFileSync(process.execPath, [createRequire(import.meta.url).resolve('typescript/bin/tsc'), '-p', at('tsconfig.build.json')], {
  stdio: 'inherit',
});
cpSync(at('src'), at('dist/src'), { recursive: true, filter: (p) => !p.endsWith('.ts') });

// The bundle replaces dist/src/cli/clientCommands.js. Modules that main.js also loads stay
// shared (external), so an error class is one class on both sides of the import.
await build({
  entryPoints: [at('dist/src/cli/clientCommands.js')],
  outfile: at('dist/src/cli/clientCommands.js'),
  allowOverwrite: true,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['./usageError.js', '../config.js'],
  sourcemap: true,
  logLevel: 'warning',
});
