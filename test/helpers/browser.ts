/**
 * Debian's headless Chromium (driven by playwright-core) for the dashboard suites: whether
 * it is there (a suite skips without it, except under CI, where that is a failure), and one
 * page on a private profile whose errors are collected.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { prerequisite } from './prerequisite.js';

export const CHROMIUM = process.env.TASKWIRE_CHROMIUM ?? '/usr/bin/chromium';

/** Whether `suite` can run: Chromium is installed (see prerequisite.ts). */
export function hasChromium(suite: string): boolean {
  return prerequisite(
    suite,
    existsSync(CHROMIUM)
      ? undefined
      : `no Chromium at ${CHROMIUM}. Install it with 'apt-get install -y chromium' (or point TASKWIRE_CHROMIUM at a Chromium binary).`,
  );
}

export interface Browser {
  context: BrowserContext;
  page: Page;
  /** Uncaught page errors and console errors (but failed loads: refused RPCs are shown on the page). */
  pageErrors: string[];
  close(): Promise<void>;
}

export async function openBrowser(options: { viewport?: { width: number; height: number } } = {}): Promise<Browser> {
  const profile = await mkdtemp(join(tmpdir(), 'taskwire-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: options.viewport,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(30_000);
  const pageErrors: string[] = [];
  page.on('pageerror', (err) => pageErrors.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) pageErrors.push(`console: ${msg.text()}`);
  });
  return {
    context,
    page,
    pageErrors,
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}
