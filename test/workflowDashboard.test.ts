/**
 * The dashboard shows a workflow with its tasks: in headless Chromium, a workflow's row has
 * a Tasks button that lists its tasks, in order, with their states as they change; each
 * task's own row says it belongs to a workflow. Skipped without Chromium, except under CI.
 */
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasChromium, openBrowser, type Browser } from './helpers/browser.js';
import { startStack, type Stack } from './helpers/stack.js';

const chromiumHere = hasChromium('test/workflowDashboard.test.ts');

describe.skipIf(!chromiumHere)('the dashboard shows a workflow with its tasks', { timeout: 90_000 }, () => {
  let stack: Stack;
  let browser: Browser;
  let page: Page;
  let pageErrors: string[];

  beforeAll(async () => {
    stack = await startStack({ workers: 0 });
    browser = await openBrowser();
    ({ page, pageErrors } = browser);
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
  });

  it("lists the workflow's tasks under its row, following their states", async () => {
    await page.goto(stack.baseUrl);
    await page.locator('#conn[data-status="live"]').waitFor();
    const tw = stack.client;
    // No worker yet: the first step waits, so the page sees the workflow before it ends.
    const wf = await tw.chain(tw.sig('add', 2, 2), tw.sig('add', 4), tw.sig('add', 8)).start();
    const row = page.locator(`#tasks tbody tr[data-task-id="${wf.id}"]`);
    await row.waitFor();
    await row.locator('button.children-toggle').click();
    const list = page.locator(`tr.children-of[data-workflow-id="${wf.id}"] ol.children li`);
    await expect.poll(() => list.count()).toBe(1);
    expect(await list.first().getAttribute('data-state')).toBe('PENDING');

    await stack.startWorker();
    await page.locator(`#tasks tbody tr[data-task-id="${wf.id}"][data-state="SUCCESS"]`).waitFor();
    await expect
      .poll(() => list.evaluateAll((lis) => lis.map((li) => (li as unknown as { dataset: { state: string } }).dataset.state)))
      .toEqual(['SUCCESS', 'SUCCESS', 'SUCCESS']);
    expect(await list.last().textContent()).toContain('→ 16');
    // Each task's own row names its workflow.
    const children = (await tw.rpc.getStatus({ id: wf.id })).task!.children;
    const child = page.locator(`#tasks tbody tr[data-task-id="${children[0]}"]`);
    expect(await child.getAttribute('data-parent-id')).toBe(wf.id);
    expect(await child.locator('td.name').textContent()).toBe('↳ add');

    // Pressed again, the list goes away.
    await row.locator('button.children-toggle').click();
    await expect.poll(() => list.count()).toBe(0);
    expect(pageErrors).toEqual([]);
  });
});
