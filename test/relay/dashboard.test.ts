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
import {
  type RelayStatusWithPeers,
  relayStatusWithPeersSchema,
  statusHistorySchema,
} from '../../src/relay/status-schema.js';
import { grindShare } from '../helpers/grind.js';
import type { ManualSource } from '../helpers/manual-source.js';
import { within } from '../helpers/stratum-miner.js';
import { testHttpApi } from '../helpers/http-api.js';
import { startTestRelay } from '../helpers/test-relay.js';

/**
 * The dashboard in a real browser against a real relay. The relay's status history is seeded
 * first, on an injected clock (a sample every 10 s of the last five minutes, with shares,
 * blocks accepted and stale, tickets and tunnel traffic between them), so the page must show
 * that past as soon as it loads; then the numbers it shows must be the ones /v1/status and
 * /v1/status/history answered, it must load nothing from elsewhere and break no rule of its
 * CSP. The screenshot is kept for CI under test/artifacts/.
 */

const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
const ARTIFACTS = fileURLToPath(new URL('../artifacts/', import.meta.url));
/** 1024 expected hashes per share: a visible hash rate, ground in milliseconds. */
const SHARE_DIFFICULTY = 2 ** -22;
/** Seeded samples, 10 s apart on the history's clock. */
const STEPS = 30;
const STEP_SECONDS = 10;
/** The coinbase up to the height push; the height follows (BIP34). */
const COINB1_HEAD = `0100000001${'00'.repeat(32)}ffffffff20`;

interface FormatModule {
  formatSi(value: number): string;
  formatUnit(value: number | null, unit: string): string;
  formatCount(value: number): string;
  formatDuration(seconds: number): string;
}
interface RatesModule {
  ratesOf(times: number[], totals: (number | null)[], per: number): (number | null)[];
  recentRate(
    times: number[],
    totals: (number | null)[],
    windowSeconds: number,
    per: number,
  ): number | null;
  latest(values: (number | null)[]): number | null;
}

async function browserModule<T>(file: string): Promise<T> {
  const url = new URL(`../../src/relay/dashboard/public/${file}`, import.meta.url).href;
  return (await import(url)) as T;
}

type Latest = Record<string, number | null>;

/**
 * The little of the DOM the in-page callbacks use. Declared here rather than pulling the DOM
 * lib into the whole test program, where `document` would then type-check in Node code.
 */
interface PageElement {
  dataset: Record<string, string | undefined>;
  textContent: string | null;
  querySelectorAll(selector: string): Iterable<PageElement>;
}
interface PageGlobals {
  document: {
    body: PageElement;
    getElementById(id: string): PageElement | null;
    querySelectorAll(selector: string): Iterable<PageElement>;
    addEventListener(
      type: 'securitypolicyviolation',
      listener: (event: { violatedDirective: string; blockedURI: string }) => void,
    ): void;
  };
  cspViolations?: string[];
}

/** Height `h` pushed the way Core does for heights 128–32767 (two bytes, little-endian). */
function coinb1(height: number): string {
  const le = Buffer.alloc(2);
  le.writeUInt16LE(height);
  return `${COINB1_HEAD}02${le.toString('hex')}`;
}

describe('dashboard in headless Chromium', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'powbridge-dashboard-'));
  let relay: Relay | null = null;
  let upstream: ManualSource;
  let echo: Server;
  let echoPort: number;
  let circuit: CircuitClient | null = null;
  let browser: Browser | null = null;
  const tunnels: WebSocket[] = [];
  /** The history's clock: seeded steps, then (null) the real time. */
  let seededAt: number | null = Math.floor(Date.now() / 1000) - STEPS * STEP_SECONDS;

  beforeAll(async () => {
    echo = createServer((socket) => socket.pipe(socket).on('error', () => undefined));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    echoPort = (echo.address() as { port: number }).port;
    ({ relay, upstream } = await startTestRelay({
      dataDir,
      clientDifficulty: SHARE_DIFFICULTY,
      // The relay never asks clients for more than the upstream does.
      upstreamDifficulty: SHARE_DIFFICULTY,
      tunnel: { ports: [echoPort], allowCidrs: ['127.0.0.1/32'] },
      // A backup relay that is not there: the peers card must show it, down.
      peers: [{ name: 'backup', url: 'http://127.0.0.1:1', identity: 'ab'.repeat(32) }],
      // No sample of its own during the test: the test seeds them.
      status: { sampleSeconds: 3600, historyHours: 48 },
      historyClock: () => seededAt ?? Date.now() / 1000,
    }));
  }, 30_000);

  afterAll(async () => {
    for (const ws of tunnels) ws.terminate();
    await browser?.close();
    await circuit?.close();
    await relay?.close();
    await new Promise<void>((resolve) => echo.close(() => resolve()));
    rmSync(dataDir, { recursive: true, force: true });
  });

  function live(): Relay {
    if (!relay) throw new Error('relay not started');
    return relay;
  }

  /** One sample, STEP_SECONDS after the one before on the history's clock. */
  function tick(): void {
    if (seededAt === null) throw new Error('seeding is over');
    seededAt += STEP_SECONDS;
    live().history.record();
  }

  /** A tunnel stream to the echo server. */
  async function openTunnel(token?: string): Promise<WebSocket> {
    const ws = new WebSocket(
      `${live().url.replace('http', 'ws')}/v1/tunnel?to=127.0.0.1:${echoPort}`,
      token ? { headers: { authorization: `Priority ${token}` } } : {},
    );
    ws.on('error', () => undefined);
    await within(new Promise<void>((resolve) => ws.once('open', () => resolve())), 'tunnel open');
    tunnels.push(ws);
    return ws;
  }

  /** Send `frames` frames of 4 KiB through a stream and wait for all of them to come back. */
  async function echoThrough(ws: WebSocket, frames: number): Promise<void> {
    const frame = Buffer.alloc(4 * 1024, 0x5a);
    const expected = frames * frame.length;
    let received = 0;
    const done = new Promise<void>((resolve) => {
      const onMessage = (data: Buffer) => {
        received += data.length;
        if (received < expected) return;
        ws.off('message', onMessage);
        resolve();
      };
      ws.on('message', onMessage);
    });
    for (let i = 0; i < frames; i++) ws.send(frame);
    await within(done, 'tunnel echo');
  }

  /**
   * Five minutes of a relay's life, one sample every 10 s: a miner whose every share is a
   * block (as on regtest: the first at a height is accepted, the rest are stale, one is
   * rejected), duplicates, two tickets issued and redeemed (one redeemed twice), and traffic
   * through a paid and a free tunnel stream.
   */
  async function seedHistory(): Promise<void> {
    tick();
    tick();
    let height = 300;
    const solved = new Set<number>();
    upstream.answer = () => {
      if (height === 310) return { accepted: false, reason: 'bad-prevblk' };
      if (solved.has(height)) {
        return { accepted: false, reason: `stale block: height ${height} is already solved` };
      }
      solved.add(height);
      return { accepted: true };
    };
    circuit = await CircuitClient.connect(`${live().url.replace('http', 'ws')}/v1/circuit`);
    const client = circuit;
    let job = within(new Promise<JobParams>((r) => client.once('job', r)), 'first job');
    const session: RegisterResult = await client.request('mining.register', {
      agent: 'dashboard',
      mode: 'tickets',
    });
    const terms = session.ticket;
    if (!terms) throw new Error('relay offered no ticket terms');
    let current = await job;
    let extranonce2 = 0;
    const submit = async () => {
      const { hash: _hash, ...share } = await grindShare(
        'sha256d',
        current,
        session.extranonce1,
        session.extranonce2Size,
        SHARE_DIFFICULTY,
        { extranonce2: ++extranonce2, maxHashes: 200_000 },
      );
      await client.request('mining.submit', share);
      return share;
    };
    let paid: WebSocket | null = null;
    let free: WebSocket | null = null;
    for (let step = 0; step < STEPS - 2; step++) {
      // A new height (a new job) every step, and 1–4 shares on it.
      height += 1;
      job = within(new Promise<JobParams>((r) => client.once('job', r)), 'new job');
      upstream.newJob({ clean: true, coinb1: coinb1(height) });
      current = await job;
      let last = null;
      for (let i = 0; i < 1 + ((step * 7) % 4); i++) last = await submit();
      if (last && step % 9 === 4) {
        await expect(client.request('mining.submit', last)).rejects.toMatchObject({
          code: RpcErrorCode.duplicateShare,
        });
      }
      if (step === 6 || step === 17) {
        const issued = await new TicketClient(terms).obtain(client);
        const grant = await client.request('ticket.redeem', { ticket: issued.ticket });
        if (step === 6) {
          await expect(
            client.request('ticket.redeem', { ticket: issued.ticket }),
          ).rejects.toMatchObject({ code: RpcErrorCode.ticketSpent });
          paid = await openTunnel(grant.token);
          free = await openTunnel();
        }
      }
      if (paid) await echoThrough(paid, 6 + (step % 5) * 3);
      if (free && step < 24) await echoThrough(free, 4 + (step % 3) * 2);
      if (free && step === 24) {
        free.close();
        const gone = free;
        await within(
          new Promise<void>((resolve) => gone.once('close', () => resolve())),
          'free stream closed',
        );
        free = null;
      }
      // Forwarding is asynchronous: sample once the relay has counted every share.
      const forwarded = () => {
        const { accepted, rejected } = live().stats.snapshot().forwarded;
        return accepted + rejected;
      };
      await expect.poll(forwarded).toBe(extranonce2);
      tick();
    }
    seededAt = null;
  }

  it('shows the relay’s past at once and the numbers /v1/status and its history answered', async () => {
    await seedHistory();
    const samples = live().history.length;
    expect(samples).toBe(STEPS + 1); // one at start, then the seeded ones
    const format = await browserModule<FormatModule>('format.js');
    const rates = await browserModule<RatesModule>('rates.js');

    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
    const url = live().url;
    const requested: string[] = [];
    const failures: string[] = [];
    /** Every /v1/status answer the page got, in order (it polls one at a time). */
    const statuses: Promise<unknown>[] = [];
    page.on('request', (request) => requested.push(request.url()));
    page.on('requestfailed', (request) => failures.push(`failed ${request.url()}`));
    page.on('response', (response) => {
      if (response.status() >= 400) failures.push(`${response.status()} ${response.url()}`);
      if (new URL(response.url()).pathname === '/v1/status') statuses.push(response.json());
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

    const response = await page.goto(`${url}/`, { timeout: 10_000 });
    expect(response?.status()).toBe(200);
    expect(response?.headers()['content-security-policy']).toMatch(/^default-src 'self'(;|$)/);

    // The first history answer draws every sample the relay holds: the past, at once.
    await page.waitForFunction(
      () => (globalThis as unknown as PageGlobals).document.body.dataset['historySamples'],
      undefined,
      { timeout: 10_000, polling: 50 },
    );
    const points = await page.evaluate(() =>
      [
        ...(globalThis as unknown as PageGlobals).document.querySelectorAll('.chart[data-points]'),
      ].map((chart) => Number(chart.dataset['points'])),
    );
    expect(points).toEqual(Array.from({ length: 8 }, () => samples));

    // The charts plot rates computed from the relay's own history.
    const history = statusHistorySchema.parse(
      await (await fetch(`${url}/v1/status/history`)).json(),
    );
    expect(history.times).toHaveLength(samples);
    const series = (name: string) => history.series[name] ?? [];
    const lastRate = (name: string, per: number) =>
      rates.latest(rates.ratesOf(history.times, series(name), per));
    const latest = async (id: string): Promise<Latest> =>
      JSON.parse((await page.getAttribute(`#${id}`, 'data-latest')) ?? 'null') as Latest;
    expect((await latest('chart-hashrate'))['hashrate']).toBe(rates.latest(series('hashrate')));
    expect(await latest('chart-shares')).toMatchObject({
      accepted: lastRate('shares.accepted', 60),
      duplicate: lastRate('shares.rejected:duplicate', 60),
    });
    expect(await latest('chart-blocks')).toEqual({
      accepted: lastRate('blocks.accepted', 3600),
      stale: lastRate('blocks.stale', 3600),
      rejected: 0,
    });
    expect((await latest('chart-blocks'))['accepted']).toBeGreaterThan(0);
    expect(await latest('chart-tickets')).toMatchObject({
      issued: lastRate('tickets.issued', 3600),
      redeemed: lastRate('tickets.redeemed', 3600),
    });
    const classes = await latest('chart-qos');
    expect(Object.keys(classes)).toEqual(['root', 'free', 'paid', 'group1', 'group4']);
    expect(classes['group4']).toBe(lastRate('qos.bytesSent:group4', 8));
    expect(classes['group4']).toBeGreaterThan(0);
    // The free stream closed before the end: its class is idle and has no stream left.
    expect(classes['free']).toBe(0);
    expect(await latest('chart-streams')).toEqual({ free: 0, group1: 0, group4: 1 });

    // Every number on the cards is the one of the /v1/status answer the page last drew.
    const shown = await page.evaluate(() => {
      const { document } = globalThis as unknown as PageGlobals;
      const fields: Record<string, string> = {};
      for (const element of document.querySelectorAll('[data-field]')) {
        fields[element.dataset['field'] ?? ''] = element.textContent ?? '';
      }
      const rates: Record<string, string> = {};
      for (const element of document.querySelectorAll('[data-rate]')) {
        rates[element.dataset['rate'] ?? ''] = element.textContent ?? '';
      }
      return { fields, rates, renders: Number(document.body.dataset['statusRenders']) };
    });
    expect(shown.renders).toBeGreaterThan(0);
    const status: RelayStatusWithPeers = relayStatusWithPeersSchema.parse(
      await statuses[shown.renders - 1],
    );
    const count = (n: number) => format.formatCount(n);
    const sumOf = (counts: Record<string, number>) =>
      Object.values(counts).reduce((a, b) => a + b, 0);
    const { shares, forwarded, blocks, tickets, load, relay: about } = status;
    if (!tickets || !load || !about) throw new Error('status without tickets, load or relay');
    expect(shown.fields).toMatchObject({
      'upstream.state': 'live',
      jobs: count(status.jobs),
      clients: count(status.clients),
      hashrate: format.formatUnit(status.hashrate.hps, 'H/s'),
      'shares.accepted': count(shares.accepted),
      'shares.rejected': count(sumOf(shares.rejected)),
      'shares.rejected.reasons': `(duplicate ${count(shares.rejected.duplicate)})`,
      'forwarded.accepted': count(forwarded.accepted),
      'forwarded.stale': count(forwarded.stale),
      'forwarded.rejected': count(forwarded.rejected - forwarded.stale),
      'blocks.found': count(blocks.found),
      'blocks.accepted': count(blocks.accepted),
      'blocks.stale': count(blocks.stale),
      'blocks.rejected': count(blocks.rejected - blocks.stale),
      'tickets.issued': count(tickets.issued),
      'tickets.redeemed': count(tickets.redeemed),
      'tickets.refused': count(sumOf(tickets.refused)),
      'load.overloaded.redeem': count(load.overloaded.redeem),
      'load.overloaded.share': count(load.overloaded.share),
      'load.circuits.unregistered': count(load.circuits.unregistered),
      'load.circuits.refusedUnregistered': count(load.circuits.refusedUnregistered),
      'load.circuits.registerTimeouts': count(load.circuits.registerTimeouts),
      'relay.version': `v${about.version}`,
      'relay.uptime': format.formatDuration(about.uptimeSeconds),
      onion: 'no onion service',
    });
    expect(blocks.accepted).toBe(STEPS - 3);
    expect(blocks.stale).toBeGreaterThan(0);
    expect(blocks.rejected - blocks.stale).toBeGreaterThan(0);
    expect(tickets).toMatchObject({ issued: 2, redeemed: 2, refused: { spent: 1 } });
    // The rates beside the totals: over the last five minutes of the relay's history.
    expect(shown.rates['shares.accepted']).toBe(
      `· ${format.formatUnit(rates.recentRate(history.times, series('shares.accepted'), 300, 60), '/min')}`,
    );
    expect(shown.rates['tickets.issued']).toBe(
      `· ${format.formatUnit(rates.recentRate(history.times, series('tickets.issued'), 300, 3600), '/h')}`,
    );

    // Blocks found: the newest rows, each with its height and what the upstream said.
    const rows = await page.evaluate(() =>
      [...(globalThis as unknown as PageGlobals).document.querySelectorAll('#block-rows tr')].map(
        (tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent ?? ''),
      ),
    );
    const newest = blocks.recent.slice(0, 10);
    expect(rows).toHaveLength(10);
    expect(rows.map((cells) => cells[1])).toEqual(
      newest.map((b) => (b.height === null ? 'unknown' : count(b.height))),
    );
    expect(rows.map((cells) => cells[3])).toEqual(
      newest.map((b) => (b.count > 1 ? `${b.result} ×${count(b.count)}` : b.result)),
    );
    expect(rows.map((cells) => cells[4])).toEqual(newest.map((b) => b.reason ?? ''));
    expect(newest.map((b) => b.result)).toContain('stale');

    // Identity, keys and the backup relay: down, and (acceptWhenOffline) still accepting.
    const glance = page.locator('#glance');
    expect(await glance.getAttribute('data-upstream-state')).toBe('live');
    const descriptor = live().tickets.descriptor();
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
      { name: 'backup', up: false, accepting: true, refusing: null, conflicts: 0 },
    ]);
    expect(await page.locator('#peer-rows .badge').allTextContents()).toEqual([
      'down',
      'accepting',
    ]);
    expect(await page.getAttribute('#connection', 'data-state')).toBe('ok');

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true });

    const foreign = requested.filter((address) => new URL(address).origin !== url);
    expect(foreign).toEqual([]);
    expect(requested).toEqual(
      expect.arrayContaining([
        `${url}/dashboard/uplot.js`,
        `${url}/v1/status`,
        `${url}/v1/status/history?maxSamples=1500`,
      ]),
    );
    expect(failures).toEqual([]);
    expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).cspViolations)).toEqual(
      [],
    );
  }, 120_000);

  it('stops sampling when the relay closes', async () => {
    const closing = live();
    expect(closing.history.running).toBe(true);
    await browser?.close();
    browser = null;
    await closing.close();
    relay = null;
    expect(closing.history.running).toBe(false);
  });
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
    // CSP-clean: no inline script or style, no handlers in attributes.
    expect(page.body).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(page.body).not.toMatch(/<style|\sstyle="|\son[a-z]+="/i);

    for (const [file, type] of [
      ['dashboard.js', 'text/javascript; charset=utf-8'],
      ['format.js', 'text/javascript; charset=utf-8'],
      ['rates.js', 'text/javascript; charset=utf-8'],
      ['tables.js', 'text/javascript; charset=utf-8'],
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
    expect(() => app({ sections: { relay: () => 1 } })).toThrow(/relay/);
    expect(() => app({ sections: { tunnel: () => 1 } })).toThrow(/tunnel/);
  });
});
