/**
 * The browser dashboard, as a person uses it: Debian's headless Chromium (driven by
 * playwright-core) opens GET / of a live stack, starts tasks with the page's form, watches
 * their rows change state without a reload (WatchEvents from the browser, Connect protocol
 * over fetch), and cancels a running task with its row's button. Ends with a screenshot.
 * Skipped without Chromium, except under CI, where that is a failure.
 */
import { existsSync } from 'node:fs';
import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTaskwireClient, TaskState } from '../src/client/index.js';
import { hasChromium, openBrowser, type Browser } from './helpers/browser.js';
import { startStack, type Stack } from './helpers/stack.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
/** The screenshot of every run; docs/dashboard.png (shown in docs/operations.md) is refreshed from it on request. */
const ARTEFACT = join(ROOT, 'test-results', 'dashboard.png');
const DOCS_SCREENSHOT = join(ROOT, 'docs', 'dashboard.png');

// Callbacks given to page.evaluate run in the browser. tsconfig has no DOM lib (the rest of the
// project is Node), so the page globals they use are declared here, only as far as they are used.
interface PageNode {
  textContent: string | null;
  dataset: Record<string, string | undefined>;
}
declare const document: { querySelector(selector: string): PageNode | null; querySelectorAll(selector: string): Iterable<PageNode> };
declare const window: Record<string, unknown>;
declare class MutationObserver {
  constructor(callback: () => void);
  observe(target: PageNode, options: { childList?: boolean; characterData?: boolean; subtree?: boolean }): void;
}

const chromiumHere = hasChromium('test/dashboard.test.ts');

describe.skipIf(!chromiumHere)('dashboard in headless Chromium', { timeout: 90_000 }, () => {
  let stack: Stack;
  let browser: Browser;
  let page: Page;
  let pageErrors: string[];

  beforeAll(async () => {
    // No worker at first: a task started from the page stays PENDING until the test starts one.
    stack = await startStack({ workers: 0, env: { TASKWIRE_LEASE: '2s' }, workerArgs: ['--concurrency', '4'] });
    browser = await openBrowser({ viewport: { width: 1440, height: 600 } });
    ({ page, pageErrors } = browser);
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
  });

  const row = (id: string) => page.locator(`#tasks tbody tr[data-task-id="${id}"]`);
  const rowInState = (id: string, state: string) => page.locator(`#tasks tbody tr[data-task-id="${id}"][data-state="${state}"]`).waitFor();

  /** The task ids of the table's rows, top to bottom, and the state each shows. */
  const rowsShown = () =>
    page
      .locator('#tasks tbody tr')
      .evaluateAll((trs) => trs.map((tr) => [(tr as unknown as PageNode).dataset.taskId!, (tr as unknown as PageNode).dataset.state!]));

  /** As a person does: type the name, Tab (the page fills in an example's arguments), edit them. */
  async function fillForm(on: Page, name: string, args: string, kwargs: string): Promise<void> {
    await on.fill('#task-name', name);
    await on.press('#task-name', 'Tab');
    await on.fill('#task-args', args);
    await on.fill('#task-kwargs', kwargs);
  }

  /** Fill the page's start form and press its button; returns the new task's id (from its row). */
  async function startFromPage(name: string, kwargs: string): Promise<string> {
    const before = new Set((await rowsShown()).map(([id]) => id));
    await fillForm(page, name, '', kwargs);
    await page.click('#start');
    await page.waitForFunction(
      (known) => [...document.querySelectorAll('#tasks tbody tr')].some((tr) => !known.includes(tr.dataset.taskId!)),
      [...before],
    );
    const fresh = (await rowsShown()).map(([id]) => id).filter((id) => !before.has(id));
    expect(fresh).toHaveLength(1);
    return fresh[0]!;
  }

  /** Every text the row's state cell shows from now on, in order (a MutationObserver in the page). */
  async function recordStates(id: string): Promise<() => Promise<string[]>> {
    await page.evaluate((taskId) => {
      const cell = document.querySelector(`#tasks tbody tr[data-task-id="${taskId}"] td.state`)!;
      const seen = [cell.textContent ?? ''];
      new MutationObserver(() => {
        if (seen.at(-1) !== cell.textContent) seen.push(cell.textContent ?? '');
      }).observe(cell, { childList: true, characterData: true, subtree: true });
      window[`states:${taskId}`] = seen;
    }, id);
    return () => page.evaluate((taskId) => window[`states:${taskId}`] as string[], id);
  }

  it('serves the page at / on the API port, with the live feed connected', async () => {
    const res = await page.goto(`${stack.baseUrl}/`);
    expect(res?.status()).toBe(200);
    expect(res?.headers()['content-type']).toMatch(/^text\/html/);
    await page.locator('#conn[data-status="live"]').waitFor();
    expect(await page.textContent('#conn')).toContain('live');
    expect(await page.isVisible('#empty')).toBe(true);
    // Marks this document: a reload or navigation would lose it.
    await page.evaluate(() => (window.sameDocument = true));
  });

  it('starts a progress task from the button and shows its row go PENDING → STARTED → SUCCESS live', async () => {
    const id = await startFromPage('progress', '{"steps": 8, "interval": 200}');
    await rowInState(id, 'PENDING');
    expect(await row(id).locator('td.name').textContent()).toBe('progress');
    expect(await row(id).locator('td.duration').textContent()).toBe('waiting');
    expect((await stack.client.status(id)).state).toBe(TaskState.PENDING);
    const states = await recordStates(id);

    await stack.startWorker();
    await rowInState(id, 'STARTED');
    // Progress arrives live while it runs: a step out of 8, before the end.
    await row(id)
      .locator('td.progress .progress-label', { hasText: /^[1-7]\/8$/ })
      .waitFor();
    await rowInState(id, 'SUCCESS');

    expect(await states()).toEqual(['PENDING', 'STARTED', 'SUCCESS']);
    const done = await stack.client.status(id);
    expect(done.state).toBe(TaskState.SUCCESS);
    expect(await row(id).locator('td.worker').textContent()).toBe(done.worker);
    expect(done.worker).not.toBe('');
    expect(await row(id).locator('td.progress .progress-label').textContent()).toBe('8/8');
    expect(await row(id).locator('td.duration').textContent()).toMatch(/^\d+\.\ds$/);
    expect(await row(id).locator('td.attempt').textContent()).toBe('1/3');
    expect(await row(id).locator('button.cancel').isDisabled()).toBe(true);
    // The feed told each change as it happened.
    const feed = await page.locator(`#feed li[data-task-id="${id}"] .change`).allTextContents();
    expect(feed.reverse()).toEqual(['→ PENDING', 'PENDING → STARTED', 'STARTED → SUCCESS']);
    expect(await page.evaluate(() => window.sameDocument)).toBe(true);
  });

  it("cancels a running task with its row's Cancel button, and shows it REVOKED", async () => {
    const id = await startFromPage('sleep', '{"seconds": 60}');
    await rowInState(id, 'STARTED');
    expect(await row(id).locator('button.cancel').isEnabled()).toBe(true);
    await row(id).locator('button.cancel').click();
    await rowInState(id, 'REVOKED');
    expect(await page.textContent('#message')).toContain('its worker has been told to stop it');
    const task = await stack.client.status(id);
    expect(task.state).toBe(TaskState.REVOKED);
    expect(task.finishedAt).toBeDefined();
    expect(await row(id).locator('button.cancel').isDisabled()).toBe(true);
    expect(await page.locator(`#feed li[data-task-id="${id}"] .change`).first().textContent()).toBe('STARTED → REVOKED');
    expect(await page.evaluate(() => window.sameDocument)).toBe(true);
  });

  it('shows tasks started elsewhere as they appear, and a refused start in words', async () => {
    const other = await stack.client.start('hello', { args: ['from a client'], countdownMs: 10 * 60_000 });
    await rowInState(other.id, 'PENDING');
    expect(await row(other.id).locator('td.duration').textContent()).toMatch(/^due \d\d:\d\d:\d\d$/);
    // Change events carry no arguments; hovering the name fetches them.
    await row(other.id).locator('td.name').hover();
    await page.locator(`#tasks tbody tr[data-task-id="${other.id}"] td.name[title*="from a client"]`).waitFor();

    await fillForm(page, 'nope', '', '');
    await page.click('#start');
    await page.locator('#message[data-kind="error"]', { hasText: 'no task is registered as "nope"' }).waitFor();
  });

  it('lists the last hour again after a reload (ListTasks created_after)', async () => {
    const all = await stack.client.rpc.listTasks({ createdAfter: timestampFromMs(Date.now() - 60 * 60_000) });
    expect(all.tasks.length).toBe(3);
    const none = await stack.client.rpc.listTasks({ createdAfter: timestampFromMs(Date.now() + 60_000) });
    expect(none.tasks).toEqual([]);

    await page.reload();
    await page.locator('#conn[data-status="live"]').waitFor();
    expect(await rowsShown()).toEqual(all.tasks.map((t) => [t.id, TaskState[t.state]]));
    expect(await page.textContent('#task-count')).toBe('(3)');
  });

  it('reconnects when the API server comes back, and catches up on what changed while it was away', async () => {
    await page.evaluate(() => (window.sameDocument = true)); // marks this document again (the test before reloaded)
    const port = stack.api.port;
    await stack.api.stop();
    await page.locator('#conn[data-status="down"]').waitFor();

    // Meanwhile another API server takes a task that runs to its end: no event reaches the page.
    const other = await stack.startApi();
    const elsewhere = createTaskwireClient({ baseUrl: `http://127.0.0.1:${other.port}` });
    const missed = await elsewhere.start('hello', { args: ['while away'] });
    expect(await elsewhere.wait(missed.id)).toBe('Hello while away!');
    expect(await row(missed.id).count()).toBe(0);

    stack.api = await stack.startApi({ args: ['--port', String(port)] });
    await page.locator('#conn[data-status="live"]').waitFor();
    await rowInState(missed.id, 'SUCCESS');
    await other.stop();
    expect(await page.evaluate(() => window.sameDocument)).toBe(true);
  });

  it('asks for a token when the server wants one, and works with it', async () => {
    const token = 'dashboard-test-token-0123456789';
    const guarded = await stack.startApi({ env: { TASKWIRE_TOKENS: token } });
    const tab = await browser.context.newPage();
    try {
      tab.setDefaultTimeout(30_000);
      const res = await tab.goto(`http://127.0.0.1:${guarded.port}/`);
      expect(res?.status()).toBe(200); // the page itself holds no data: it is served to anyone
      await tab.locator('#token-box:not([hidden])').waitFor();
      expect(await tab.textContent('#message')).toMatch(/token/);
      expect(await tab.locator('#conn[data-status="live"]').count()).toBe(0);
      expect(await tab.locator('#tasks tbody tr').count()).toBe(0);

      await tab.fill('#token', token);
      await tab.press('#token', 'Enter');
      await tab.locator('#conn[data-status="live"]').waitFor();
      await tab.locator('#tasks tbody tr').first().waitFor();
      await fillForm(tab, 'hello', '["with a token"]', '');
      await tab.click('#start');
      await tab.locator('#tasks tbody tr[data-state="SUCCESS"] td.name[title*="with a token"]').waitFor();
    } finally {
      await tab.close();
      await guarded.stop();
    }
  });

  it('takes a screenshot with tasks in several states (test-results/dashboard.png)', async () => {
    const failed = await startFromPage('fail', '{"message": "it broke on purpose", "type": "ValueError"}');
    await rowInState(failed, 'FAILURE');
    expect(await row(failed).locator('td.state').getAttribute('title')).toBe('ValueError: it broke on purpose');
    const hello = await startFromPage('hello', '');
    await rowInState(hello, 'SUCCESS');
    const running = await startFromPage('progress', '{"steps": 40, "interval": 250}');
    await row(running)
      .locator('td.progress .progress-label', { hasText: /^(1[2-9]|2\d)\/40$/ })
      .waitFor();

    await mkdir(join(ROOT, 'test-results'), { recursive: true });
    await page.screenshot({ path: ARTEFACT, fullPage: true });
    if (process.env.TASKWIRE_UPDATE_SCREENSHOT === '1' || !existsSync(DOCS_SCREENSHOT)) {
      await mkdir(join(ROOT, 'docs'), { recursive: true });
      await copyFile(ARTEFACT, DOCS_SCREENSHOT);
    }
    expect(existsSync(ARTEFACT)).toBe(true);
    await stack.client.cancel(running, { terminate: true });
    await rowInState(running, 'REVOKED');
    expect(pageErrors).toEqual([]);
  });

  it("shows a task's args when the live feed announced it before its Start reply arrived", async () => {
    // The feed's events leave out args and kwargs. Hold the Start reply back until the feed's
    // PENDING event has made the row, as happens when the reply is the slower of the two.
    let held: string | undefined;
    await page.route('**/taskwire.v1.TaskService/Start', async (route) => {
      const response = await route.fetch();
      held = ((await response.json()) as { task: { id: string } }).task.id;
      await row(held).waitFor();
      await route.fulfill({ response });
    });
    try {
      await fillForm(page, 'hello', '["held back"]', '');
      await page.click('#start');
      await page.waitForFunction(() => document.querySelector('#message')?.textContent?.startsWith('started hello'));
      expect(held).toBeDefined();
      expect(await row(held!).locator('td.name').getAttribute('title')).toBe('["held back"]');
    } finally {
      await page.unroute('**/taskwire.v1.TaskService/Start');
    }
  });
});
