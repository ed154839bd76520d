import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseTicketFile, type TicketFile } from '../../src/client/ticket-file.js';
import type { Relay } from '../../src/relay/relay.js';
import { decodeAnyTicket } from '../../src/tickets/any-ticket.js';
import { verifyDescriptor } from '../../src/tickets/descriptor.js';
import { rsaPublicKey } from '../../src/tickets/rsa-scheme.js';
import { inlineTicketVerifier } from '../../src/tickets/ticket-verifier.js';
import {
  exportTickets,
  figure,
  figureAtLeast,
  launchChromium,
  openMinePage as openPage,
  PAGE_WAIT_MS,
  startMining,
} from '../helpers/browser-page.js';
import { runCli } from '../helpers/cli.js';
import { startTestRelay } from '../helpers/test-relay.js';

/**
 * Tickets in the miner page (GET /mine, issue 18) in headless Chromium against a real
 * in-process relay with a low price: the page blinds, the relay signs, the page finalizes,
 * verifies and keeps the ticket in IndexedDB; the exported ticket verifies with the relay's
 * own verifier, the built CLI imports it into a wallet and redeems it at the relay, and the
 * page takes an export back. The page pins the relay's identity and refuses a changed one.
 * Needs dist/ and dist/browser (npm run build).
 */

const SHARE_DIFFICULTY = 2 ** -22;
/** Share and ticket difficulty are equal, so each share is 1 credit: a ticket every 2 shares. */
const PRICE = 2;
const CLI_MS = 60_000;

interface PageGlobals {
  indexedDB: {
    open(name: string): {
      onsuccess: (() => void) | null;
      result: {
        transaction(
          store: string,
          mode: string,
        ): {
          objectStore(name: string): {
            get(key: string): { onsuccess: (() => void) | null; result: unknown };
            put(value: unknown, key: string): void;
          };
          oncomplete: (() => void) | null;
        };
        close(): void;
      };
    };
  };
}

describe('tickets in the miner page', () => {
  const dir = mkdtempSync(join(tmpdir(), 'powbridge-mine-page-tickets-'));
  const wallet = join(dir, 'wallet.sqlite');
  let relay: Relay | null = null;
  let browser: Browser | null = null;
  let exported: TicketFile | null = null;
  let exportedText = '';

  beforeAll(async () => {
    ({ relay } = await startTestRelay({
      dataDir: join(dir, 'relay'),
      clientDifficulty: SHARE_DIFFICULTY,
      upstreamDifficulty: SHARE_DIFFICULTY,
      price: PRICE,
    }));
    browser = await launchChromium();
  }, 30_000);

  afterAll(async () => {
    await browser?.close();
    await relay?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function live(): { relay: Relay; browser: Browser } {
    if (!relay || !browser) throw new Error('not started');
    return { relay, browser };
  }

  async function descriptor() {
    const response = await fetch(`${live().relay.url}/v1/descriptor`);
    const json: unknown = await response.json();
    const identity = (json as { identity: string }).identity;
    return verifyDescriptor(json, identity);
  }

  function openMinePage(context?: BrowserContext): Promise<Page> {
    return openPage(context ?? live().browser, live().relay.url);
  }

  const ONE_WORKER = { threads: 1, cpuPercent: 100 };

  it('earns tickets, shows the pinned identity, and exports them', async () => {
    const { identity } = await descriptor();
    const page = await openMinePage();
    await expect.poll(() => figure(page, 'identity'), { timeout: PAGE_WAIT_MS }).toBe(identity);
    await startMining(page, { ...ONE_WORKER, donate: false });
    await figureAtLeast(page, 'tickets', 2);
    await page.click('#toggle');
    expect(await figure(page, 'ticket-expiry')).toMatch(/^\d{4}-\d\d-\d\dT00:00:00Z$/);

    exportedText = await exportTickets(page);
    exported = parseTicketFile(exportedText);
    const earned = Number(await figure(page, 'tickets'));
    expect(exported.identity).toBe(identity);
    expect(exported.relay).toBe(`${live().relay.url.replace(/^http/, 'ws')}/v1/circuit`);
    expect(exported.tickets.length).toBe(earned);
    expect(await figure(page, 'ticket-state')).toMatch(new RegExp(`^${earned} tickets exported`));
    await page.context().close();
  }, 90_000);

  it("the exported tickets verify with the relay's own verifier", async () => {
    if (!exported) throw new Error('no export');
    const { tickets } = await descriptor();
    const verifier = inlineTicketVerifier();
    for (const entry of exported.tickets) {
      const ticket = decodeAnyTicket(entry.ticket);
      const listed = tickets.keys.find((k) => k.keyId === entry.keyId);
      if (!listed) throw new Error(`key ${entry.keyId} not listed`);
      const key = rsaPublicKey(new Uint8Array(Buffer.from(listed.publicKey, 'hex')));
      expect(await verifier.verify({ scheme: 'rsa', key }, ticket)).toBe(true);
      if (ticket.version !== 2) throw new Error('the page issues v2 tickets only');
      const signature = Uint8Array.from(ticket.v2.signature);
      signature[7] = (signature[7] ?? 0) ^ 1;
      const forged = { ...ticket, v2: { ...ticket.v2, signature } };
      expect(await verifier.verify({ scheme: 'rsa', key }, forged)).toBe(false);
    }
    await verifier.close();
  });

  it('the CLI imports the export and redeems a ticket at the relay', async () => {
    if (!exported) throw new Error('no export');
    const file = join(dir, 'tickets.json');
    writeFileSync(file, exportedText);
    const imported = await runCli(['tickets', 'import', file, '--wallet', wallet], CLI_MS);
    expect(imported.stderr).toBe('');
    expect(imported.code).toBe(0);
    expect(imported.stdout).toMatch(
      new RegExp(`^took ${exported.tickets.length}, refused 0, for ws://.*signed descriptor`),
    );
    const listed = await runCli(['tickets', 'list', '--wallet', wallet, '--json'], CLI_MS);
    const counts = (JSON.parse(listed.stdout) as { counts: { unspent: number } }).counts;
    expect(counts.unspent).toBe(exported.tickets.length);

    const redeemed = await runCli(
      ['tickets', 'redeem', '--relay', live().relay.url, '--wallet', wallet, '--show-token'],
      CLI_MS,
    );
    expect(redeemed.code).toBe(0);
    expect(redeemed.stdout).toMatch(/^ticket \d+: granted class \S+ until .*\n {2}token \S+/);
    expect(redeemed.stdout).toMatch(/redeemed 1 of 1/);

    // A ticket changed on the way is refused, and said why; the file's others are taken.
    const [first] = exported.tickets;
    if (!first) throw new Error('no ticket');
    const swapped = first.ticket[100] === 'A' ? 'B' : 'A';
    const tampered = {
      ...exported,
      tickets: [
        { ...first, ticket: `${first.ticket.slice(0, 100)}${swapped}${first.ticket.slice(101)}` },
      ],
    };
    const bad = join(dir, 'tampered.json');
    writeFileSync(bad, JSON.stringify(tampered));
    const refused = await runCli(['tickets', 'import', bad, '--wallet', wallet], CLI_MS);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toMatch(/^took 0, refused 1,/);
    expect(refused.stdout).toMatch(/refused {2}day .*: (signature does not verify|key .* is not)/);
  }, 120_000);

  it('a CLI export goes back into a fresh page, each ticket checked', async () => {
    const out = join(dir, 'back.json');
    const done = await runCli(
      ['tickets', 'export', '--relay', live().relay.url, '--wallet', wallet, '--out', out],
      CLI_MS,
    );
    expect(done.code).toBe(0);
    const back = parseTicketFile(readFileSync(out, 'utf8'));
    expect(back.tickets.length).toBe((exported?.tickets.length ?? 0) - 1);

    const page = await openMinePage();
    await expect
      .poll(() => figure(page, 'identity'), { timeout: PAGE_WAIT_MS })
      .toMatch(/^[0-9a-f]{64}$/);
    expect(await figure(page, 'tickets')).toBe('0');
    await page.fill('#ticket-text', JSON.stringify(back));
    await page.click('#import');
    await expect
      .poll(() => figure(page, 'ticket-state'), { timeout: PAGE_WAIT_MS })
      .toBe(`Imported ${back.tickets.length} ticket${back.tickets.length === 1 ? '' : 's'}.`);
    expect(await figure(page, 'tickets')).toBe(String(back.tickets.length));

    // Garbage is refused, ticket by ticket, and nothing is added.
    const [entry] = back.tickets;
    if (!entry) throw new Error('no ticket');
    const forged = { ...back, tickets: [{ ...entry, day: entry.day - 5 }] };
    await page.fill('#ticket-text', JSON.stringify(forged));
    await page.click('#import');
    await expect
      .poll(() => figure(page, 'ticket-state'), { timeout: PAGE_WAIT_MS })
      .toMatch(/^Imported 0 tickets; refused 1: .*not the ticket’s own/);
    expect(await figure(page, 'tickets')).toBe(String(back.tickets.length));
    await page.context().close();
  }, 90_000);

  it('donate mode earns no tickets', async () => {
    const page = await openMinePage();
    await startMining(page, { ...ONE_WORKER, donate: true });
    // Enough work for two tickets, were it credited.
    await figureAtLeast(page, 'accepted', 2 * PRICE);
    expect(await figure(page, 'credit')).toBe('0');
    expect(await figure(page, 'tickets')).toBe('0');
    await page.click('#toggle');
    await page.context().close();
  }, 90_000);

  it('refuses tickets from a relay whose identity is not the one pinned', async () => {
    const context = await live().browser.newContext();
    const page = await openMinePage(context);
    await expect
      .poll(() => figure(page, 'identity'), { timeout: PAGE_WAIT_MS })
      .toMatch(/^[0-9a-f]{64}$/);
    // As if this origin had served another relay before: the pin names another identity.
    await page.evaluate(
      () =>
        new Promise<void>((resolve) => {
          const open = (globalThis as unknown as PageGlobals).indexedDB.open(
            'powbridge-miner-page',
          );
          open.onsuccess = () => {
            const tx = open.result.transaction('settings', 'readwrite');
            tx.objectStore('settings').put({ identity: 'ab'.repeat(32), keys: [] }, 'pin');
            tx.oncomplete = () => {
              open.result.close();
              resolve();
            };
          };
        }),
    );
    await page.reload();
    await expect
      .poll(() => figure(page, 'relay-problem'), { timeout: PAGE_WAIT_MS })
      .toMatch(/^the relay's identity changed: this browser pinned (ab){32}/);
    expect(await figure(page, 'identity')).toBe('not verified');
    await startMining(page, { ...ONE_WORKER, donate: false });
    await page.waitForSelector('#state[data-state="failed"]', { timeout: PAGE_WAIT_MS });
    expect(await figure(page, 'state')).toMatch(
      /^Not mining for tickets: the relay's identity changed/,
    );
    await context.close();
  }, 90_000);
});
