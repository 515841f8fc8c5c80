/**
 * The dashboard's schedules, as a person uses them: headless Chromium opens GET / of a live
 * stack, sees a schedule with its next and last run, and pauses and resumes it with its
 * row's button. Skipped without Chromium, except under CI.
 */
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runsAtLeast } from './helpers/periodic.js';
import { hasChromium, openBrowser, type Browser } from './helpers/browser.js';
import { startStack, type Stack } from './helpers/stack.js';

const chromiumHere = hasChromium('test/periodicDashboard.test.ts');

describe.skipIf(!chromiumHere)('schedules on the dashboard', { timeout: 90_000 }, () => {
  let stack: Stack;
  let browser: Browser;
  let page: Page;
  let pageErrors: string[];

  beforeAll(async () => {
    stack = await startStack({ workers: 1 });
    browser = await openBrowser();
    ({ page, pageErrors } = browser);
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
  });

  it('lists a schedule with its next and last run, and pauses and resumes it', async () => {
    await stack.client.createSchedule('dash-every', 'hello', { everyMs: 1000, overlap: 'allow' });
    await runsAtLeast(stack.client, 'dash-every', 1);
    await page.goto(stack.baseUrl);
    const row = page.locator('#schedules tbody tr[data-id="dash-every"]');
    await row.waitFor();
    await expect.poll(async () => row.locator('td').nth(1).textContent()).toBe('every 1s');
    await expect.poll(async () => row.locator('td').nth(2).textContent()).toBe('hello@default');
    // A last run is shown with its task id once the page has read it.
    await expect.poll(async () => row.locator('td').nth(5).textContent(), { timeout: 10_000 }).not.toBe('never');

    await row.locator('button.pause').click();
    await row.locator('td.next.paused').waitFor();
    expect((await stack.client.getSchedule('dash-every')).paused).toBe(true);

    await page.locator('#schedules tbody tr[data-id="dash-every"] button.resume').click();
    await page.locator('#schedules tbody tr[data-id="dash-every"] button.pause').waitFor();
    expect((await stack.client.getSchedule('dash-every')).paused).toBe(false);
    expect(pageErrors).toEqual([]);
  });
});
