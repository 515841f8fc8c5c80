/**
 * The package runs compiled JavaScript: `npm install` builds dist/ (the `prepare` script),
 * the `taskwire` command runs it, and `import 'taskwire'` / `'taskwire/client'` load it with
 * plain Node, no TypeScript loader.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from './helpers/stack.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'taskwire-package-'));

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ workers: 1 });
});
afterAll(async () => {
  await stack?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

describe('the installed package', () => {
  it('has a build in dist/ (npm install runs `npm run build`)', () => {
    expect(existsSync(join(ROOT, 'dist/src/cli/main.js')), 'dist/ is missing: run `npm run build`').toBe(true);
  });

  it('exports the service and the client as JavaScript a project imports with plain Node', async () => {
    mkdirSync(join(scratch, 'node_modules'), { recursive: true });
    symlinkSync(ROOT, join(scratch, 'node_modules', 'taskwire'), 'dir');
    writeFileSync(
      join(scratch, 'use.mjs'),
      [
        "import { createTaskwireClient } from 'taskwire/client';",
        "import * as taskwire from 'taskwire';",
        `const client = createTaskwireClient({ baseUrl: ${JSON.stringify(stack.baseUrl)} });`,
        "const task = await client.start('hello', { args: ['Ada'] });",
        'console.log(JSON.stringify({ result: await client.wait(task), defineTask: typeof taskwire.defineTask, resolved: import.meta.resolve("taskwire/client") }));',
      ].join('\n'),
    );
    const { stdout } = await run(process.execPath, ['use.mjs'], { cwd: scratch, env: { ...process.env, NODE_OPTIONS: '' } });
    const out = JSON.parse(stdout);
    expect(out.result).toBe('Hello Ada!');
    expect(out.defineTask).toBe('function');
    expect(out.resolved).toMatch(/\/dist\/src\/client\/index\.js$/);
  });

  it('runs the taskwire command from the build', async () => {
    const { stdout } = await run(process.execPath, [join(ROOT, 'bin/taskwire.js'), 'start', 'hello', '--args', '["Lucy"]', '--wait'], {
      env: { ...process.env, TASKWIRE_SERVER: stack.baseUrl },
    });
    expect(stdout).toMatch(/SUCCESS .*"Hello Lucy!"/);
  });
});
