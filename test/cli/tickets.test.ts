import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { circuitUrl } from '../../src/client/redeem.js';
import type { IssuedTicket } from '../../src/client/ticket-client.js';
import { Wallet } from '../../src/client/wallet.js';
import type { Relay } from '../../src/relay/relay.js';
import { utcDay } from '../../src/tickets/keyring.js';
import { runCli } from '../helpers/cli.js';
import { fakeIssued } from '../helpers/fake-ticket.js';
import { startTestRelay } from '../helpers/test-relay.js';
import { type Socks5Server, startSocks5Server } from '../helpers/socks5-server.js';
import { issueTicketV2 } from '../helpers/ticket-v2.js';
import { decodeTicketV2, ticketV2Serial } from '../../src/tickets/ticket-v2.js';

/** The CLI through the built binary (`npm run build` first), against a relay in this process. */

const dataDir = mkdtempSync(join(tmpdir(), 'powbridge-cli-tickets-relay-'));
let relay: Relay;
let root: string;
let walletFile: string;
const savedHome = process.env.HOME;

const now = () => Date.now() / 1000;
const today = () => utcDay(now());
const mode = (path: string) => statSync(path).mode & 0o777;

beforeAll(async () => {
  ({ relay } = await startTestRelay({ dataDir }));
}, 30_000);

afterAll(async () => {
  await relay?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'powbridge-cli-tickets-'));
  walletFile = join(root, 'wallet.sqlite');
  // The child inherits this: ~ is the test's own directory, never the real home.
  process.env.HOME = join(root, 'home');
});

afterEach(() => {
  process.env.HOME = savedHome;
  rmSync(root, { recursive: true, force: true });
});

/** A ticket the test relay accepts: v2, signed by its RSA key (the default scheme). */
function realTicket(): IssuedTicket {
  const issuing = relay.tickets.keys.issuingRsaKey(today());
  if (!issuing) throw new Error('relay has no RSA issuing key today');
  return {
    ticket: issueTicketV2(issuing.key, today()).text,
    keyId: Buffer.from(issuing.key.keyId).toString('hex'),
    day: today(),
  };
}

/** Fill a wallet file and close it again, so the CLI can take it. */
function withWallet<T>(file: string, fill: (wallet: Wallet) => T): T {
  const wallet = Wallet.open(file);
  try {
    return fill(wallet);
  } finally {
    wallet.close();
  }
}

interface ListedJson {
  wallet: string;
  counts: Record<string, number>;
  tickets: { id: number; state: string; ticket?: string }[];
}

describe('powbridge tickets list', () => {
  it('creates the default wallet (~/.powbridge 0700, file 0600) and lists it empty', async () => {
    const result = await runCli(['tickets', 'list']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const file = join(root, 'home', '.powbridge', 'wallet.sqlite');
    expect(result.stdout).toBe(`wallet ${file}: 0 unspent, 0 spent, 0 expired\n  no tickets\n`);
    expect(mode(join(root, 'home', '.powbridge'))).toBe(0o700);
    expect(mode(file)).toBe(0o600);
  });

  it('lists tickets without their strings unless --show-tickets; --state filters', async () => {
    const relayUrl = 'ws://relay.test/v1/circuit';
    const tickets = withWallet(walletFile, (w) => {
      const added = [fakeIssued(today()), fakeIssued(today() - 1), fakeIssued(today() - 3)].map(
        (t) => w.add(relayUrl, t, now()),
      );
      w.markSpent(added[1]?.id ?? 0, now(), Math.floor(now()) + 600);
      return added.map((t) => t.ticket);
    });

    const plain = await runCli(['tickets', 'list', '--wallet', walletFile]);
    expect(plain.code).toBe(0);
    // The oldest one is past its last day: list marks it expired.
    expect(plain.stdout).toContain(`wallet ${walletFile}: 1 unspent, 1 spent, 1 expired`);
    expect(plain.stdout).toMatch(
      / 1 {2}unspent {2}day \d{4}-\d\d-\d\d {2}key 0102030405060708 {2}ws:\/\/relay\.test\/v1\/circuit/,
    );
    for (const ticket of tickets) expect(plain.stdout).not.toContain(ticket);

    const json = await runCli(['tickets', 'list', '--wallet', walletFile, '--json']);
    const listed = JSON.parse(json.stdout) as ListedJson;
    expect(listed.counts).toEqual({ unspent: 1, spent: 1, expired: 1 });
    expect(listed.tickets.map((t) => t.state)).toEqual(['unspent', 'spent', 'expired']);
    expect(listed.tickets.every((t) => t.ticket === undefined)).toBe(true);
    for (const ticket of tickets) expect(json.stdout).not.toContain(ticket);

    const shown = await runCli([
      'tickets',
      'list',
      '--wallet',
      walletFile,
      '--json',
      '--state',
      'spent',
      '--show-tickets',
    ]);
    const spent = JSON.parse(shown.stdout) as ListedJson;
    expect(spent.tickets).toMatchObject([{ id: 2, state: 'spent', ticket: tickets[1] }]);
  });

  it('exits 2 on a bad --state, a missing --wallet file or a wallet others can read', async () => {
    const badState = await runCli(['tickets', 'list', '--state', 'lost']);
    expect(badState.code).toBe(2);
    expect(badState.stderr).toMatch(/Allowed choices are unspent, spent, expired/);

    const missing = await runCli(['tickets', 'list', '--wallet', join(root, 'typo.sqlite')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/no wallet at .*typo\.sqlite \(the miner creates/);

    withWallet(walletFile, () => undefined);
    chmodSync(walletFile, 0o644);
    const open = await runCli(['tickets', 'list', '--wallet', walletFile]);
    expect(open.code).toBe(2);
    expect(open.stderr).toMatch(/mode 0644.*chmod 600/);
  });
});

describe('powbridge tickets redeem', () => {
  it('refuses, before spending anything, a grant nobody would hold (neither --for-socks nor --show-token)', async () => {
    const relayUrl = circuitUrl(relay.url);
    const ticket = withWallet(walletFile, (w) => w.add(relayUrl, realTicket(), now()).ticket);
    const spentBefore = await relay.tickets.store.count();
    const result = await runCli([
      'tickets',
      'redeem',
      '--relay',
      relay.url,
      '--wallet',
      walletFile,
    ]);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(
      'powbridge tickets redeem: a grant is of use only to whoever holds its token: add ' +
        '--for-socks to keep it in the wallet for `powbridge mine --socks-listen`, or ' +
        '--show-token to print it; nothing was spent (see powbridge tickets redeem --help)\n',
    );
    // The wallet still holds it, and the relay never saw it: no row in its spent store.
    withWallet(walletFile, (w) => {
      expect(w.list()).toMatchObject([{ ticket, state: 'unspent', spentAt: null }]);
      expect(w.grantFor(relayUrl, now())).toBeUndefined();
    });
    expect(await relay.tickets.store.count()).toBe(spentBefore);
    expect(await relay.tickets.store.isSpent(ticketV2Serial(decodeTicketV2(ticket)))).toBe(false);
  });

  it('--for-socks keeps one grant in the wallet, the tickets of the run paid into it; the token only on request', async () => {
    const relayUrl = circuitUrl(relay.url);
    const tickets = withWallet(walletFile, (w) =>
      [realTicket(), realTicket(), realTicket()].map((t) => w.add(relayUrl, t, now()).ticket),
    );
    // http://host:port finds the tickets filed under ws://host:port/v1/circuit.
    const args = ['tickets', 'redeem', '--relay', relay.url, '--wallet', walletFile];
    const two = await runCli([...args, '--count', '2', '--for-socks']);
    expect(two.stderr).toBe('');
    expect(two.code).toBe(0);
    const lines = two.stdout.trim().split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(
      /^ticket 1: granted class paid until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/,
    );
    expect(lines[1]).toMatch(/^ticket 2: paid into the same grant, class paid until /);
    expect(lines[2]).toBe(`redeemed 2 of 2; wallet ${walletFile}: 1 unspent, 2 spent, 0 expired`);
    expect(lines[3]).toMatch(
      new RegExp(
        `^grant kept in the wallet until \\S+Z for powbridge mine --relay ${relayUrl.replace(/[./]/g, '\\$&')} ` +
          `--socks-listen <host:port> --wallet ${walletFile.replace(/[./]/g, '\\$&')}$`,
      ),
    );
    expect(two.stdout).not.toMatch(/token/);
    for (const ticket of tickets) expect(two.stdout).not.toContain(ticket);
    // The grant the relay holds, with both tickets in it, is the one in the wallet.
    const kept = withWallet(walletFile, (w) => w.grantFor(relayUrl, now()));
    if (!kept) throw new Error('no grant kept in the wallet');
    expect(two.stdout).not.toContain(kept.token);
    expect(relay.tickets.redeemer.grants.lookup(kept.token, now())?.tickets).toBe(2);

    const shown = await runCli([...args, '--show-token']);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(
      /^ticket 3: granted class paid until .*\n {2}token [A-Za-z0-9_-]{43}\n/,
    );
    // Printed, not kept: the wallet's grant is still the --for-socks one.
    withWallet(walletFile, (w) => expect(w.grantFor(relayUrl, now())).toEqual(kept));

    const none = await runCli([...args, '--for-socks']);
    expect(none.code).toBe(1);
    expect(none.stdout).toMatch(/^no unspent ticket for this relay that is redeemable today\n/);
    expect(none.stdout).toContain('redeemed 0 of 1');
    expect(none.stdout).not.toMatch(/grant kept/);
    withWallet(walletFile, (w) => {
      expect(w.counts()).toEqual({ unspent: 0, spent: 3, expired: 0 });
      expect(w.list().every((t) => t.grantExpiresAt !== null)).toBe(true);
    });
  });

  it('exits 1 and keeps the ticket when the relay is unreachable', async () => {
    const dead = 'ws://127.0.0.1:1/v1/circuit';
    withWallet(walletFile, (w) => w.add(dead, realTicket(), now()));
    const result = await runCli([
      'tickets',
      'redeem',
      '--relay',
      dead,
      '--wallet',
      walletFile,
      '--for-socks',
    ]);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/^ticket 1: no answer from the relay \(.*\); kept unspent\n/);
    withWallet(walletFile, (w) => expect(w.counts().unspent).toBe(1));
  });

  describe('through a SOCKS5 proxy', () => {
    let socks: Socks5Server;
    beforeEach(async () => {
      socks = await startSocks5Server();
    });
    afterEach(async () => {
      await socks.close();
    });

    it('sends the relay name to the proxy (socks5h) with new random credentials per ticket', async () => {
      // A name, not an address: with socks5h the proxy (Tor) resolves it.
      const port = new URL(relay.url).port;
      const named = `ws://localhost:${port}`;
      withWallet(walletFile, (w) => {
        for (let i = 0; i < 2; i++) w.add(circuitUrl(named), realTicket(), now());
      });
      const result = await runCli([
        'tickets',
        'redeem',
        '--relay',
        named,
        '--wallet',
        walletFile,
        '--count',
        '2',
        '--proxy',
        `socks5h://127.0.0.1:${socks.port}`,
        '--show-token',
      ]);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(result.stdout).toContain('redeemed 2 of 2');
      expect(socks.requests).toHaveLength(2);
      for (const request of socks.requests) {
        expect(request).toMatchObject({ host: 'localhost', port: Number(port) });
        expect(request.username).toMatch(/^[0-9a-f]{24}$/);
        expect(request.password).toMatch(/^[0-9a-f]{24}$/);
      }
      const [a, b] = socks.requests;
      expect(a?.username).not.toBe(b?.username);
      expect(a?.password).not.toBe(b?.password);
    });
  });

  it('exits 2 on bad input, explaining socks5h', async () => {
    const base = ['tickets', 'redeem', '--wallet', walletFile];
    const cases: [string[], RegExp][] = [
      [[...base], /required option '-r, --relay <url>' not specified/],
      [[...base, '--relay', 'relay.example'], /not a URL/],
      [[...base, '--relay', 'ftp://relay.example'], /ws:\/\//],
      [
        [...base, '--relay', 'ws://r.test', '--proxy', 'http://127.0.0.1:9050'],
        /socks5h:\/\/host:port \(the proxy resolves the relay name: with Tor, DNS goes through Tor\)/,
      ],
      [
        [...base, '--relay', 'ws://r.test', '--proxy', 'socks4://127.0.0.1:9050'],
        /unsupported proxy scheme socks4:/,
      ],
      [
        [...base, '--relay', 'ws://r.test', '--proxy', 'socks5h://127.0.0.1'],
        /needs host and port/,
      ],
      [
        [...base, '--relay', 'ws://r.test', '--proxy', 'socks5h://u:p@127.0.0.1:9050'],
        /leave credentials out.*stream isolation/,
      ],
      [[...base, '--relay', 'ws://r.test', '--proxy', 'not a url'], /not a URL/],
      [[...base, '--relay', 'ws://r.test', '--count', '0'], /whole number from 1 to 100/],
      [[...base, '--relay', 'ws://r.test', '--count', 'many'], /whole number from 1 to 100/],
    ];
    for (const [args, message] of cases) {
      const result = await runCli(args);
      expect({ args, code: result.code }).toEqual({ args, code: 2 });
      expect(result.stderr).toMatch(message);
      expect(result.stdout).toBe('');
    }
  }, 60_000);
});

describe('powbridge tickets prune', () => {
  it('expires old tickets, deletes long-settled ones and never an unspent one', async () => {
    const relayUrl = 'ws://relay.test/v1/circuit';
    const at = now();
    withWallet(walletFile, (w) => {
      w.add(relayUrl, fakeIssued(today()), at);
      const spentOld = w.add(relayUrl, fakeIssued(today() - 40), at);
      w.markSpent(spentOld.id, at - 40 * 86_400);
      const spentNew = w.add(relayUrl, fakeIssued(today()), at);
      w.markSpent(spentNew.id, at - 5);
      w.add(relayUrl, fakeIssued(today() - 2), at);
    });
    const result = await runCli(['tickets', 'prune', '--wallet', walletFile]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(
      `marked 1 expired, deleted 1 settled more than 30 days ago; ` +
        `wallet ${walletFile}: 1 unspent, 1 spent, 1 expired\n`,
    );
    const all = await runCli(['tickets', 'prune', '--wallet', walletFile, '--keep-days', '0']);
    expect(all.code).toBe(0);
    expect(all.stdout).toBe(
      `marked 0 expired, deleted 2 settled more than 0 days ago; ` +
        `wallet ${walletFile}: 1 unspent, 0 spent, 0 expired\n`,
    );

    const bad = await runCli(['tickets', 'prune', '--wallet', walletFile, '--keep-days', '-1']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/whole number from 0 to 3650/);
  });
});
