import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { parseTicketFile, type TicketFile } from '../../src/client/ticket-file.js';
import { parseRelayConfig } from '../../src/relay/config.js';
import { type Relay, startRelay } from '../../src/relay/relay.js';
import { SHARE_REJECT_REASONS } from '../../src/relay/stats.js';
import { type RelayStatus, relayStatusSchema } from '../../src/relay/status-schema.js';
import { decodeAnyTicket } from '../../src/tickets/any-ticket.js';
import { verifyDescriptor } from '../../src/tickets/descriptor.js';
import { rsaPublicKey } from '../../src/tickets/rsa-scheme.js';
import { inlineTicketVerifier } from '../../src/tickets/ticket-verifier.js';
import {
  exportTickets,
  figure,
  figureAtLeast,
  launchChromium,
  openMinePage,
  PAGE_WAIT_MS,
  startMining,
} from '../helpers/browser-page.js';
import { runCli } from '../helpers/cli.js';
import {
  type RegtestNetwork,
  type RegtestNode,
  startRegtestNetwork,
  waitFor,
} from '../helpers/litecoind.js';

/**
 * The miner page (GET /mine, issue 18) the way issue 18 asks for it: headless Chromium on a
 * relay in solo mode on a real litecoind -regtest node. The page mines scrypt with the CLI's
 * WebAssembly kernel in its Web Workers, the relay accepts its shares and the node takes the
 * blocks they make; the page earns v2 tickets that the relay's own verifier and the built
 * CLI's `tickets import` accept. Needs dist/ and dist/browser (npm run build).
 */

/**
 * Regtest's network difficulty (getdifficulty 4.66e-10, 3.05e-5 in scrypt share units) caps the
 * client's, so a share is ~2 scrypt hashes and each one is a block. At this ticket difficulty a
 * share is worth ~32 credits: a ticket every 4 shares, a moment of one browser worker.
 */
const TICKET_DIFFICULTY = 2 ** -20;
const PRICE = 128;
const CLI_MS = 60_000;

let net: RegtestNetwork | null = null;
let relay: Relay | null = null;
let browser: Browser | null = null;
const dir = mkdtempSync(join(tmpdir(), 'powbridge-mine-page-regtest-'));

function live(): { node: RegtestNode; relay: Relay; browser: Browser } {
  const node = net?.nodes[0];
  if (!node || !relay || !browser) throw new Error('not started');
  return { node, relay, browser };
}

async function status(): Promise<RelayStatus> {
  const response = await fetch(`${live().relay.url}/v1/status`);
  return relayStatusSchema.parse(await response.json());
}

async function blockCount(): Promise<number> {
  return z.number().parse(await live().node.rpc('getblockcount'));
}

beforeAll(async () => {
  // The relay mines on the first node; the second is only its peer: Litecoin Core refuses
  // getblocktemplate to a node without one (docs/design.md §3.2).
  net = await startRegtestNetwork([{ auth: 'password' }, { auth: 'cookie' }]);
  const node = net.nodes[0];
  if (!node || !('user' in node.auth)) throw new Error('no password-auth node');
  await node.rpc('createwallet', 'relay');
  const payoutAddress = z.string().parse(await node.walletRpc('relay', 'getnewaddress'));
  await node.rpc('generatetoaddress', 1, payoutAddress);
  const started = await startRelay(
    parseRelayConfig({
      relay: { listen: '127.0.0.1:0', dataDir: join(dir, 'relay') },
      log: { level: 'silent' },
      source: {
        type: 'node',
        algorithm: 'scrypt',
        node: {
          rpcUrl: node.rpcUrl,
          rpcUser: node.auth.user,
          rpcPassword: node.auth.password,
          payoutAddress,
          pollIntervalSeconds: 1,
        },
      },
      difficulty: { ticketDifficulty: TICKET_DIFFICULTY },
      tickets: { price: PRICE },
    }),
  );
  relay = started;
  await waitFor('relay upstream live', () => started.stratifier.upstreamState === 'live');
  browser = await launchChromium();
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await relay?.close();
  await net?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('miner page in headless Chromium on a regtest relay (scrypt, solo)', () => {
  let exported: TicketFile | null = null;
  let exportedText = '';

  it('mines scrypt: the relay accepts its shares, the node its blocks, and it earns a ticket', async () => {
    const { relay } = live();
    const startHeight = await blockCount();
    const before = await status();
    const kernels: string[] = [];
    const page = await openMinePage(live().browser, relay.url, (p) => {
      p.context().on('request', (request) => {
        const path = new URL(request.url()).pathname;
        if (path.endsWith('.wasm')) kernels.push(path);
      });
    });
    const descriptor = z
      .object({ identity: z.string() })
      .parse(await (await fetch(`${relay.url}/v1/descriptor`)).json());
    await expect
      .poll(() => figure(page, 'identity'), { timeout: PAGE_WAIT_MS })
      .toBe(descriptor.identity);

    await startMining(page, { threads: 1, cpuPercent: 100, donate: false });
    await figureAtLeast(page, 'tickets', 1);
    await expect.poll(() => figure(page, 'hashrate'), { timeout: PAGE_WAIT_MS }).toMatch(/H\/s$/);
    expect(await page.locator('#state').getAttribute('data-state')).toBe('live');
    expect(kernels).toEqual(['/mine/scrypt.wasm']);

    // The page's counts first, while it mines: the relay counts a share before it answers.
    // (Not after Stop: the share in flight then ends "rejected" in the page, the circuit gone.)
    const accepted = Number(await figure(page, 'accepted'));
    const rejected = Number(await figure(page, 'rejected'));
    const after = await status();
    await page.click('#toggle');
    expect(accepted).toBeGreaterThan(0);
    expect(after.shares.accepted - before.shares.accepted).toBeGreaterThanOrEqual(accepted);
    // Every share the page made was good work: none refused as low, duplicate or malformed.
    // Only "job not found (stale)" can happen, and does: each share here is a block, the block
    // clears the job, and the page's next share races the clean job to the relay (§4.3).
    for (const reason of SHARE_REJECT_REASONS) {
      if (reason === 'stale') continue;
      expect({ reason, count: after.shares.rejected[reason] }).toEqual({
        reason,
        count: before.shares.rejected[reason],
      });
    }
    const staleAtRelay = after.shares.rejected.stale - before.shares.rejected.stale;
    expect(rejected).toBeLessThanOrEqual(staleAtRelay);
    // On regtest a share is a block: the node took at least one, and the relay says so.
    expect(after.blocks.accepted).toBeGreaterThan(before.blocks.accepted);
    expect(await blockCount()).toBeGreaterThan(startHeight);
    // Real blocks of the network: the peer node follows.
    const best = await live().node.rpc('getbestblockhash');
    const peer = net?.nodes[1];
    if (!peer) throw new Error('no peer node');
    await waitFor(
      'the peer node synced',
      async () => (await peer.rpc('getbestblockhash')) === best,
    );

    exportedText = await exportTickets(page);
    exported = parseTicketFile(exportedText);
    expect(exported.identity).toBe(descriptor.identity);
    expect(exported.tickets.length).toBeGreaterThanOrEqual(1);
    expect(exported.tickets.length).toBe(Number(await figure(page, 'tickets')));
    await page.context().close();
  }, 60_000);

  it("the exported tickets are v2 and verify with the relay's own verifier", async () => {
    if (!exported) throw new Error('no export');
    const response = await fetch(`${live().relay.url}/v1/descriptor`);
    const json: unknown = await response.json();
    const { tickets } = verifyDescriptor(json, live().relay.tickets.keys.identity.publicKeyHex);
    const verifier = inlineTicketVerifier();
    try {
      for (const entry of exported.tickets) {
        const ticket = decodeAnyTicket(entry.ticket);
        expect(ticket.version).toBe(2);
        const listed = tickets.keys.find((k) => k.keyId === entry.keyId);
        if (!listed) throw new Error(`key ${entry.keyId} not listed`);
        const key = rsaPublicKey(new Uint8Array(Buffer.from(listed.publicKey, 'hex')));
        expect(await verifier.verify({ scheme: 'rsa', key }, ticket)).toBe(true);
      }
    } finally {
      await verifier.close();
    }
  });

  it("the built CLI's `tickets import` takes the export", async () => {
    if (!exported) throw new Error('no export');
    const file = join(dir, 'tickets.json');
    const wallet = join(dir, 'wallet.sqlite');
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
  }, 90_000);
});
