import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { expect } from 'vitest';

/**
 * The miner page (GET /mine) driven in headless Chromium, as the e2e tests open it: Debian's
 * chromium through playwright-core, the form filled in as a visitor would, and the figures
 * read back from the page's own DOM. Needs dist/browser (npm run build).
 */

export const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
/** How long a test waits for a figure or a state of the page. */
export const PAGE_WAIT_MS = 60_000;

export function launchChromium(args: string[] = []): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args });
}

/**
 * A new page on the relay's /mine, checked to load. `prepare` runs on the page before it
 * navigates (listeners, init scripts); without a context, the page gets a fresh one.
 */
export async function openMinePage(
  target: Browser | BrowserContext,
  relayUrl: string,
  prepare?: (page: Page) => Promise<void> | void,
): Promise<Page> {
  const context = 'newContext' in target ? await target.newContext() : target;
  const page = await context.newPage();
  await prepare?.(page);
  const response = await page.goto(`${relayUrl}/mine`);
  expect(response?.status()).toBe(200);
  return page;
}

/** The text of one of the page's figures (#accepted, #tickets, #hashrate, …). */
export async function figure(page: Page, id: string): Promise<string> {
  return (await page.locator(`#${id}`).textContent()) ?? '';
}

/** Wait until the numeric figure `id` reaches `min`; returns its value then. */
export async function figureAtLeast(
  page: Page,
  id: string,
  min: number,
  timeoutMs = PAGE_WAIT_MS,
): Promise<number> {
  await expect
    .poll(async () => Number(await figure(page, id)), { timeout: timeoutMs, interval: 200 })
    .toBeGreaterThanOrEqual(min);
  return Number(await figure(page, id));
}

export interface MiningSettings {
  threads: number;
  cpuPercent: number;
  donate: boolean;
}

/** Fill the settings form and press Start. */
export async function startMining(page: Page, settings: MiningSettings): Promise<void> {
  await page.fill('#threads', String(settings.threads));
  await page.fill('#cpu', String(settings.cpuPercent));
  await page.setChecked('#donate', settings.donate);
  await page.click('#toggle');
}

/** Press Export and return the ticket file the page puts in its text box. */
export async function exportTickets(page: Page): Promise<string> {
  await page.click('#export');
  await expect.poll(() => page.inputValue('#ticket-text'), { timeout: PAGE_WAIT_MS }).not.toBe('');
  return page.inputValue('#ticket-text');
}
