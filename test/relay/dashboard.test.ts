import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { CircuitClient } from '../../src/client/circuit-client.js';
import { TicketClient } from '../../src/client/ticket-client.js';
import { RpcErrorCode } from '../../src/protocol/errors.js';
import type { JobParams, RegisterResult } from '../../src/protocol/messages.js';
import type { Relay } from '../../src/relay/relay.js';
import { grindShare } from '../helpers/grind.js';
import { within } from '../helpers/stratum-miner.js';
import { testHttpApi } from '../helpers/http-api.js';
import { startTestRelay } from '../helpers/test-relay.js';

/**
 * The dashboard in a real browser against a real relay: shares, a rejected share, a ticket
 * issued and redeemed, and tunnel traffic in a paid and the free class; then the page must
 * draw all of it, load nothing from elsewhere and break no rule of its own CSP.
 */

const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url));
/** 4096 expected hashes per share: a visible hash rate, ground in milliseconds. */
const SHARE_DIFFICULTY = 2 ** -20;

type Latest = Record<string, number>;

/**
 * The little of the DOM the in-page callbacks use. Declared here rather than pulling the DOM
 * lib into the whole test program, where `document` would then type-check in Node code.
 */
interface PageGlobals {
  document: {
    getElementById(id: string): { dataset: Record<string, string | undefined> } | null;
    addEventListener(
      type: 'securitypolicyviolation',
      listener: (event: { violatedDirective: string; blockedURI: string }) => void,
    ): void;
  };
  cspViolations?: string[];
}

describe('dashboard in headless Chromium', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'powbridge-dashboard-'));
  let relay: Relay;
  let echo: Server;
  let echoPort: number;
  let circuit: CircuitClient | null = null;
  let browser: Browser | null = null;
  const tunnels: WebSocket[] = [];
  let pump: NodeJS.Timeout | undefined;

  beforeAll(async () => {
    echo = createServer((socket) => socket.pipe(socket).on('error', () => undefined));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    echoPort = (echo.address() as { port: number }).port;
    ({ relay } = await startTestRelay({
      dataDir,
      clientDifficulty: SHARE_DIFFICULTY,
      // The relay never asks clients for more than the upstream does.
      upstreamDifficulty: SHARE_DIFFICULTY,
      tunnel: { ports: [echoPort], allowCidrs: ['127.0.0.1/32'] },
      // A backup relay that is not there: the peers card must show it, down.
      peers: [{ name: 'backup', url: 'http://127.0.0.1:1', identity: 'ab'.repeat(32) }],
    }));
  }, 30_000);

  afterAll(async () => {
    clearInterval(pump);
    for (const ws of tunnels) ws.terminate();
    await browser?.close();
    await circuit?.close();
    await relay?.close();
    await new Promise<void>((resolve) => echo.close(() => resolve()));
    rmSync(dataDir, { recursive: true, force: true });
  });

  /** Register in ticket mode; the first job arrives right after the answer. */
  async function register(): Promise<{ session: RegisterResult; job: JobParams }> {
    circuit = await CircuitClient.connect(`${relay.url.replace('http', 'ws')}/v1/circuit`);
    const job = within(
      new Promise<JobParams>((resolve) => circuit!.once('job', resolve)),
      'first job',
    );
    const session = await circuit.request('mining.register', {
      agent: 'dashboard',
      mode: 'tickets',
    });
    return { session, job: await job };
  }

  /** A tunnel stream to the echo server that keeps 16 KiB frames flowing every 50 ms. */
  async function openTunnel(token?: string): Promise<WebSocket> {
    const ws = new WebSocket(
      `${relay.url.replace('http', 'ws')}/v1/tunnel?to=127.0.0.1:${echoPort}`,
      token ? { headers: { authorization: `Priority ${token}` } } : {},
    );
    ws.on('error', () => undefined);
    await within(new Promise<void>((resolve) => ws.once('open', () => resolve())), 'tunnel open');
    tunnels.push(ws);
    return ws;
  }

  it('draws hash rate, shares, tickets and class rates from a live relay', async () => {
    // Shares: three accepted, then the first again (rejected as a duplicate).
    const { session, job } = await register();
    const shares = [];
    for (let i = 0; i < 3; i++) {
      const share = await grindShare(
        'sha256d',
        job,
        session.extranonce1,
        session.extranonce2Size,
        SHARE_DIFFICULTY,
        { extranonce2: i + 1, maxHashes: 200_000 },
      );
      const { hash: _hash, ...submission } = share;
      await circuit!.request('mining.submit', submission);
      shares.push(submission);
    }
    await expect(circuit!.request('mining.submit', shares[0]!)).rejects.toMatchObject({
      code: RpcErrorCode.duplicateShare,
    });

    // A ticket issued over the circuit and redeemed; redeeming it twice is refused (spent).
    if (!session.ticket) throw new Error('relay offered no ticket terms');
    const issued = await new TicketClient(session.ticket).obtain(circuit!);
    const grant = await circuit!.request('ticket.redeem', { ticket: issued.ticket });
    await expect(
      circuit!.request('ticket.redeem', { ticket: issued.ticket }),
    ).rejects.toMatchObject({ code: RpcErrorCode.ticketSpent });

    // Tunnel traffic in the paid class (the grant) and the free class, kept flowing while
    // the page polls: the class rates are estimates that decay within seconds.
    const streams = [await openTunnel(grant.token), await openTunnel()];
    const frame = Buffer.alloc(16 * 1024, 0x5a);
    pump = setInterval(() => {
      for (const ws of streams) {
        if (ws.readyState === WebSocket.OPEN && ws.bufferedAmount < 256 * 1024) ws.send(frame);
      }
    }, 50);

    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
    const requested: string[] = [];
    const failures: string[] = [];
    page.on('request', (request) => requested.push(request.url()));
    page.on('requestfailed', (request) => failures.push(`failed ${request.url()}`));
    page.on('response', (response) => {
      if (response.status() >= 400) failures.push(`${response.status()} ${response.url()}`);
    });
    page.on('pageerror', (error) => failures.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') failures.push(`console: ${message.text()}`);
    });
    // Devtools-injected, so not itself subject to the page's CSP.
    await page.addInitScript(() => {
      const page = globalThis as unknown as PageGlobals;
      const seen: string[] = [];
      page.cspViolations = seen;
      page.document.addEventListener('securitypolicyviolation', (event) =>
        seen.push(`${event.violatedDirective} ${event.blockedURI}`),
      );
    });

    const response = await page.goto(`${relay.url}/`, { timeout: 10_000 });
    expect(response?.status()).toBe(200);
    expect(response?.headers()['content-security-policy']).toMatch(/^default-src 'self'(;|$)/);

    // Three samples per chart (lines, not dots, in the screenshot) and every value we made.
    await page.waitForFunction(
      () => {
        const { document } = globalThis as unknown as PageGlobals;
        const latest = (id: string): Record<string, number> | null => {
          const element = document.getElementById(id);
          if (!element || Number(element.dataset['points'] ?? 0) < 3) return null;
          return JSON.parse(element.dataset['latest'] ?? 'null') as Record<string, number>;
        };
        const hashrate = latest('chart-hashrate');
        const shares = latest('chart-shares');
        const upstream = latest('chart-upstream');
        const tickets = latest('chart-tickets');
        const qos = latest('chart-qos');
        return (
          (hashrate?.['hashrate'] ?? 0) > 0 &&
          (shares?.['duplicate'] ?? 0) > 0 &&
          (upstream?.['accepted'] ?? 0) > 0 &&
          (tickets?.['redeemed'] ?? 0) > 0 &&
          (qos?.['free'] ?? 0) > 1000 &&
          // One ticket: the 1–3-ticket class.
          (qos?.['group4'] ?? 0) > 1000 &&
          document.getElementById('glance')?.dataset['identity'] !== undefined
        );
      },
      undefined,
      { timeout: 20_000, polling: 200 },
    );

    const latest = async (id: string): Promise<Latest> =>
      JSON.parse((await page.getAttribute(`#${id}`, 'data-latest')) ?? 'null') as Latest;
    expect((await latest('chart-hashrate'))['hashrate']).toBeGreaterThan(0);
    expect(await latest('chart-shares')).toEqual({ accepted: 3, duplicate: 1 });
    expect(await latest('chart-upstream')).toMatchObject({ accepted: 3, rejected: 0 });
    expect(await latest('chart-tickets')).toEqual({ issued: 1, redeemed: 1, spent: 1 });
    const classes = await latest('chart-qos');
    expect(Object.keys(classes)).toEqual(['root', 'free', 'paid', 'group1', 'group4']);
    expect(classes['free']).toBeGreaterThan(1000);
    expect(classes['group4']).toBeGreaterThan(1000);

    const glance = page.locator('#glance');
    expect(await glance.getAttribute('data-upstream-state')).toBe('live');
    const descriptor = relay.tickets.descriptor();
    expect(await glance.getAttribute('data-identity')).toBe(descriptor.identity);
    expect(await glance.getAttribute('data-key-ids')).toBe(
      descriptor.tickets.keys.map((k) => k.keyId).join(','),
    );
    expect(await page.locator('#ticket-keys .badge').first().textContent()).toBe('issuing');
    await page.waitForFunction(
      () =>
        (globalThis as unknown as PageGlobals).document
          .getElementById('peers')
          ?.dataset['peers']?.includes('"up":false') ?? false,
      undefined,
      { timeout: 10_000, polling: 200 },
    );
    expect(await page.locator('#peers').isVisible()).toBe(true);
    expect(JSON.parse((await page.getAttribute('#peers', 'data-peers')) ?? 'null')).toEqual([
      { name: 'backup', up: false, conflicts: 0 },
    ]);
    expect(await page.locator('#peer-rows .badge').textContent()).toBe('down');
    expect(await page.getAttribute('#connection', 'data-state')).toBe('ok');

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true });

    const foreign = requested.filter((url) => new URL(url).origin !== relay.url);
    expect(foreign).toEqual([]);
    expect(requested).toEqual(
      expect.arrayContaining([`${relay.url}/dashboard/uplot.js`, `${relay.url}/v1/status`]),
    );
    expect(failures).toEqual([]);
    expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).cspViolations)).toEqual(
      [],
    );
  }, 60_000);
});

describe('dashboard routes and status sections', () => {
  function app(options: { sections?: Record<string, () => unknown> } = {}) {
    return testHttpApi({
      tickets: () => ({
        issued: 4,
        redeemed: 3,
        refused: { malformed: 0, unknownKey: 1, wrongDay: 0, badSignature: 0, spent: 2 },
      }),
      ...options,
    });
  }

  it('serves the page and its files with a same-origin CSP, and nothing else', async () => {
    const api = app();
    const page = await api.inject({ method: 'GET', url: '/' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers['content-security-policy']).toContain("default-src 'self'");
    expect(page.headers['x-content-type-options']).toBe('nosniff');
    expect(page.body).toContain('dashboard/dashboard.js');
    expect(page.body).not.toMatch(/(src|href)="(https?:)?\/\//);

    for (const [file, type] of [
      ['dashboard.js', 'text/javascript; charset=utf-8'],
      ['uplot.js', 'text/javascript; charset=utf-8'],
      ['uplot.css', 'text/css; charset=utf-8'],
      ['favicon.svg', 'image/svg+xml'],
    ] as const) {
      const asset = await api.inject({ method: 'GET', url: `/dashboard/${file}` });
      expect(asset.statusCode, file).toBe(200);
      expect(asset.headers['content-type'], file).toBe(type);
    }
    for (const url of [
      '/dashboard/index.html',
      '/dashboard/nope.js',
      '/dashboard/..%2Fassets.ts',
      '/dashboard/../../package.json',
      '/dashboard/',
    ]) {
      const missing = await api.inject({ method: 'GET', url });
      expect(missing.statusCode, url).toBe(404);
      expect(missing.json(), url).toEqual({ error: 'not found' });
    }
    await api.close();
  });

  it('adds the tickets section and merges extra sections; a failing one is null', async () => {
    const api = app({
      sections: {
        peers: () => ({ count: 2, names: ['b'] }),
        broken: () => {
          throw new Error('down');
        },
      },
    });
    const body = (await api.inject({ method: 'GET', url: '/v1/status' })).json<
      Record<string, unknown>
    >();
    expect(body['tickets']).toEqual({
      issued: 4,
      redeemed: 3,
      refused: { malformed: 0, unknownKey: 1, wrongDay: 0, badSignature: 0, spent: 2 },
    });
    expect(body['peers']).toEqual({ count: 2, names: ['b'] });
    expect(body['broken']).toBeNull();
    expect(body['jobs']).toBe(0);
    await api.close();
  });

  it('refuses section names that clash with built-in fields or are not plain names', () => {
    expect(() => app({ sections: { jobs: () => 1 } })).toThrow(/jobs/);
    expect(() => app({ sections: { __proto__x: () => 1 } })).toThrow(/__proto__x/);
    expect(() => app({ sections: { 'a b': () => 1 } })).toThrow(/a b/);
  });
});
