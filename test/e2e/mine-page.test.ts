import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/relay/relay.js';
import { type RelayStatus, relayStatusSchema } from '../../src/relay/status-schema.js';
import {
  figure,
  figureAtLeast,
  launchChromium,
  openMinePage,
  PAGE_WAIT_MS,
  startMining,
} from '../helpers/browser-page.js';
import { startTestRelay } from '../helpers/test-relay.js';

/**
 * The miner page (GET /mine, issue 18) in headless Chromium against a real in-process relay:
 * the page mines with its Web Workers and the relay accepts its shares; a donor earns no
 * credit; and nothing the page or its workers load comes from another origin or breaks its
 * Content-Security-Policy. Needs dist/browser (npm run build).
 */

const ARTIFACTS = fileURLToPath(new URL('../artifacts/', import.meta.url));
/** 1024 expected sha256d hashes per share: shares come in milliseconds at any speed. */
const SHARE_DIFFICULTY = 2 ** -22;
/** Credit per share is 1 here (share and ticket difficulty equal): no ticket in a test's run. */
const NO_TICKET_PRICE = 1_000_000;
const TWO_WORKERS = { threads: 2, cpuPercent: 100 };

/** The DOM the in-page callbacks touch, declared here rather than pulling in the DOM lib. */
interface PageGlobals {
  crossOriginIsolated: boolean;
  document: {
    addEventListener(
      type: 'securitypolicyviolation',
      listener: (event: { violatedDirective: string; blockedURI: string }) => void,
    ): void;
  };
  cspViolations?: string[];
}

describe('miner page in headless Chromium', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'powbridge-mine-page-'));
  let relay: Relay | null = null;
  let browser: Browser | null = null;
  /** Every URL the browser asked for (pages, workers, WebSockets). */
  const requested: string[] = [];

  beforeAll(async () => {
    ({ relay } = await startTestRelay({
      dataDir,
      clientDifficulty: SHARE_DIFFICULTY,
      upstreamDifficulty: SHARE_DIFFICULTY,
      // Out of reach: credit stays credit here (tickets: mine-page-tickets.test.ts).
      price: NO_TICKET_PRICE,
    }));
    browser = await launchChromium();
  }, 30_000);

  afterAll(async () => {
    await browser?.close();
    await relay?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  function live(): { relay: Relay; browser: Browser } {
    if (!relay || !browser) throw new Error('not started');
    return { relay, browser };
  }

  async function status(): Promise<RelayStatus> {
    const response = await fetch(`${live().relay.url}/v1/status`);
    return relayStatusSchema.parse(await response.json());
  }

  /** A fresh page on /mine, every request and WebSocket recorded, CSP violations collected. */
  function openRecordedPage(): Promise<Page> {
    return openMinePage(live().browser, live().relay.url, async (page) => {
      page.context().on('request', (request) => requested.push(request.url()));
      page.on('websocket', (ws) => requested.push(ws.url()));
      page.on('worker', (worker) => requested.push(worker.url()));
      await page.addInitScript(() => {
        const g = globalThis as unknown as PageGlobals;
        g.cspViolations = [];
        g.document.addEventListener('securitypolicyviolation', (event) =>
          g.cspViolations?.push(`${event.violatedDirective} ${event.blockedURI}`),
        );
      });
    });
  }

  it('mines with workers and the relay accepts its shares, earning credit', async () => {
    const before = await status();
    const page = await openRecordedPage();
    expect(
      await page.evaluate(() => (globalThis as unknown as PageGlobals).crossOriginIsolated),
    ).toBe(true);
    await startMining(page, { ...TWO_WORKERS, donate: false });
    const accepted = await figureAtLeast(page, 'accepted', 3);
    expect(await page.locator('#state').getAttribute('data-state')).toBe('live');
    expect(await figure(page, 'rejected')).toBe('0');
    expect(Number(await figure(page, 'credit'))).toBeGreaterThan(0);
    // The figure is a dash until the first one-second sample: the screenshot waits for a rate.
    await expect.poll(() => figure(page, 'hashrate'), { timeout: PAGE_WAIT_MS }).toMatch(/H\/s$/);
    const after = await status();
    expect(after.shares.accepted - before.shares.accepted).toBeGreaterThanOrEqual(accepted);
    expect(after.clients).toBeGreaterThanOrEqual(1);
    // Kept for CI, as the dashboard's: what a visitor sees while mining.
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'mine-page.png'), fullPage: true });
    await page.click('#toggle');
    expect(await page.locator('#state').getAttribute('data-state')).toBe('stopped');
    expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).cspViolations)).toEqual(
      [],
    );
    await page.context().close();
  }, 90_000);

  it('in donate mode mines without credit and the relay issues no ticket', async () => {
    const before = await status();
    const page = await openRecordedPage();
    await startMining(page, { ...TWO_WORKERS, donate: true });
    const accepted = await figureAtLeast(page, 'accepted', 3);
    expect(await figure(page, 'credit')).toBe('0');
    expect(await figure(page, 'tickets')).toBe('0');
    const after = await status();
    expect(after.shares.accepted - before.shares.accepted).toBeGreaterThanOrEqual(accepted);
    expect(after.tickets?.issued).toBe(before.tickets?.issued);
    expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).cspViolations)).toEqual(
      [],
    );
    await page.context().close();
  }, 90_000);

  it("needs 'wasm-unsafe-eval': without it Chromium refuses to compile the kernels", async () => {
    // Responses fulfilled by the test count as coming from a public address for Chromium's
    // local network checks, which would then block the circuit to 127.0.0.1.
    const unchecked = await launchChromium(['--disable-features=LocalNetworkAccessChecks']);
    const context = await unchecked.newContext();
    // The same responses, with the policy less that one source.
    await context.route('**/mine**', async (route) => {
      const response = await route.fetch();
      const headers = response.headers();
      headers['content-security-policy'] = (headers['content-security-policy'] ?? '').replace(
        " 'wasm-unsafe-eval'",
        '',
      );
      await route.fulfill({ response, headers });
    });
    const page = await context.newPage();
    await page.goto(`${live().relay.url}/mine`);
    await startMining(page, { ...TWO_WORKERS, donate: true });
    await page.waitForSelector('#state[data-state="failed"]', { timeout: PAGE_WAIT_MS });
    expect(await figure(page, 'state')).toMatch(/Cannot start the miner: .*WebAssembly/);
    await unchecked.close();
  }, 90_000);

  it('loaded nothing from any other origin', () => {
    const origin = new URL(live().relay.url);
    expect(requested.length).toBeGreaterThan(0);
    for (const url of requested) {
      const { protocol, host } = new URL(url);
      expect({ url, host }).toEqual({ url, host: origin.host });
      expect(['http:', 'ws:']).toContain(protocol);
    }
    // The page, its script, its worker, the kernel and the circuit were all among them.
    const paths = new Set(requested.map((url) => new URL(url).pathname));
    for (const path of [
      '/mine',
      '/mine/mine.js',
      '/mine/mine-worker.js',
      '/mine/sha256d.wasm',
      '/v1/circuit',
    ]) {
      expect(paths).toContain(path);
    }
  });

  it('serves the page and its files with a strict policy, and nothing else under /mine', async () => {
    const base = live().relay.url;
    for (const path of [
      '/mine',
      '/mine/mine.js',
      '/mine/mine-worker.js',
      '/mine/sha256d.wasm',
      '/mine/mine.css',
    ]) {
      const response = await fetch(`${base}${path}`);
      expect(response.status).toBe(200);
      const csp = response.headers.get('content-security-policy') ?? '';
      expect(csp).toContain("default-src 'none'");
      expect(csp).toContain("script-src 'self' 'wasm-unsafe-eval'");
      expect(csp).not.toMatch(/'unsafe-(eval|inline)'/);
      expect(response.headers.get('cross-origin-embedder-policy')).toBe('require-corp');
      expect(response.headers.get('cross-origin-opener-policy')).toBe('same-origin');
    }
    expect((await fetch(`${base}/mine/sha256d.wasm`)).headers.get('content-type')).toBe(
      'application/wasm',
    );
    for (const path of ['/mine/index.html', '/mine/..%2Fpackage.json', '/mine/nope.js']) {
      expect((await fetch(`${base}${path}`)).status).toBe(404);
    }
  });
});
