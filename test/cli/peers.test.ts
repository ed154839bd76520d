import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { circuitUrl } from '../../src/client/redeem.js';
import { Wallet } from '../../src/client/wallet.js';
import type { PeerBalance } from '../../src/peers/peer-status.js';
import { SqlitePeerLedger } from '../../src/peers/peer-ledger.js';
import type { PeerLedger } from '../../src/storage/peer-ledger.js';
import { utcDay } from '../../src/tickets/keyring.js';
import { runCli } from '../helpers/cli.js';
import { relayTomlLines, startTestRelay } from '../helpers/test-relay.js';
import { issueTicketV2 } from '../helpers/ticket-v2.js';
import { fakeIssued } from '../helpers/fake-ticket.js';
import { startPeeredRelays } from '../peers/peered-relays.js';

/** `powbridge peers` through the built binary (`npm run build` first), on a seeded ledger. */

let root: string;
let dataDir: string;
let configFile: string;

const now = () => Date.now() / 1000;
const R2_IDENTITY = 'b2'.repeat(32);
const R3_IDENTITY = 'c3'.repeat(32);

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'powbridge-cli-peers-'));
  dataDir = join(root, 'data');
  configFile = join(root, 'relay.toml');
  writeConfig(configFile, dataDir);
});

afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

/** A relay config with two peers: r2 (bills every 2 tickets, refused at 3 unpaid) and r3. */
function writeConfig(file: string, dir: string, r2Url = 'http://127.0.0.1:1'): void {
  writeFileSync(
    file,
    [
      ...relayTomlLines(dir),
      '[peering]',
      'syncIntervalSeconds = 30',
      '[[peers]]',
      'name = "r2"',
      `url = "${r2Url}"`,
      `identity = "${R2_IDENTITY}"`,
      'paymentEvery = 2',
      'maxUnpaid = 3',
      '[[peers]]',
      'name = "r3"',
      'url = "http://127.0.0.1:2"',
      `identity = "${R3_IDENTITY}"`,
      '',
    ].join('\n'),
  );
}

async function withLedger<T>(use: (ledger: PeerLedger) => Promise<T>): Promise<T> {
  mkdirSync(dataDir, { recursive: true });
  const ledger = SqlitePeerLedger.open(join(dataDir, 'peers.sqlite'));
  try {
    return await use(ledger);
  } finally {
    await ledger.close();
  }
}

let ids = 0;
const nextId = () => `req-${++ids}`;

/**
 * r2's side of the books: we served 5 of its tickets (billed 4 in two requests of 2, one of
 * them while it was unreachable, one not yet billed): 4 unpaid reaches its maxUnpaid of 3.
 * It billed us 3 + 4 of ours, and one serial was spent both here and there.
 */
async function seedR2(): Promise<{ conflictSerial: string }> {
  const at = Math.floor(now()) - 100;
  return withLedger(async (ledger) => {
    for (let i = 0; i < 5; i++) {
      await ledger.recordServed(
        'r2',
        {
          serial: randomBytes(32),
          keyId: randomBytes(8),
          day: utcDay(at),
          seq: i + 1,
          at: at + i,
          offline: i === 0,
        },
        2,
        nextId,
      );
    }
    const period = { from: at - 50, to: at - 10 };
    await ledger.recordRequestIn(
      'r2',
      { id: 'in-1', count: 3, digest: 'aa'.repeat(32), period },
      0,
      at,
    );
    await ledger.recordRequestIn(
      'r2',
      { id: 'in-2', count: 4, digest: 'bb'.repeat(32), period },
      0,
      at,
    );
    const serial = randomBytes(32);
    await ledger.recordConflict(
      'r2',
      { serial, keyId: randomBytes(8), day: utcDay(at), oursAt: at, theirsAt: at + 1 },
      at,
    );
    return { conflictSerial: serial.toString('hex') };
  });
}

interface StatusJson {
  ledger: string;
  activity: boolean;
  peers: {
    name: string;
    identity: string;
    acceptTickets: boolean;
    maxUnpaid: number;
    refusingTickets: boolean;
    balance: PeerBalance;
    requestsIn: { id: string; count: number }[];
    conflicts: { count: number; serials: string[] };
  }[];
}

async function status(): Promise<StatusJson> {
  const result = await runCli(['peers', 'status', '--config', configFile, '--json']);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  return JSON.parse(result.stdout) as StatusJson;
}

const balanceOf = async (name: string) =>
  (await status()).peers.find((p) => p.name === name)?.balance;

describe('powbridge peers status', () => {
  it('reports every configured peer from the ledger, as JSON and as a table', async () => {
    const { conflictSerial } = await seedR2();
    const json = await status();
    expect(json.activity).toBe(true);
    expect(json.ledger).toBe(join(dataDir, 'peers.sqlite'));
    expect(json.peers.map((p) => p.name)).toEqual(['r2', 'r3']);
    const [r2, r3] = json.peers;
    expect(r2).toMatchObject({
      identity: R2_IDENTITY,
      acceptTickets: true,
      maxUnpaid: 3,
      refusingTickets: true,
      balance: {
        served: 5,
        billed: 4,
        unbilled: 1,
        settledToUs: 0,
        unpaidToUs: 4,
        billedToUs: 7,
        settledByUs: 0,
        weOwe: 7,
        owedSync: 1,
        pendingRequests: 2,
        pendingSettlements: 0,
        conflicts: 1,
      },
      requestsIn: [
        { id: 'in-1', count: 3 },
        { id: 'in-2', count: 4 },
      ],
      conflicts: { count: 1, serials: [conflictSerial.slice(0, 16)] },
    });
    expect(r3).toMatchObject({
      refusingTickets: false,
      balance: { served: 0, weOwe: 0, unpaidToUs: 0, conflicts: 0 },
      requestsIn: [],
      conflicts: { count: 0, serials: [] },
    });

    const text = await runCli(['peers', 'status', '--config', configFile]);
    expect(text.code).toBe(0);
    const row = text.stdout.split('\n').find((l) => l.startsWith('r2 '));
    expect(row).toMatch(
      /^r2 +http:\/\/127\.0\.0\.1:1 +b2b2b2b2b2b2b2b2… +REFUSING +5 +4 +1 +4 \/ 3 +7 +1 +2 +1$/,
    );
    expect(text.stdout).toMatch(/^r3 +.* accepted +0 +0 +0 +0 \/ 100 +0 +0 +0 +0$/m);
    expect(text.stdout).toContain('r2: REFUSING its tickets: 4 tickets billed and unpaid');
    expect(text.stdout).toContain('r2: billed us 7 tickets, we settled 0: we owe 7');
    expect(text.stdout).toMatch(/request in-2 {2}4 tickets {2}served /);
    expect(text.stdout).toContain(
      `1 double spend (serials redeemed here and at r2): ${conflictSerial.slice(0, 16)}…`,
    );
    expect(text.stdout).not.toContain(R2_IDENTITY);
  });

  it('says there is no peer activity yet, without creating the data dir', async () => {
    const json = await status();
    expect(json.activity).toBe(false);
    expect(json.peers.map((p) => [p.name, p.balance.served, p.balance.weOwe])).toEqual([
      ['r2', 0, 0],
      ['r3', 0, 0],
    ]);
    const text = await runCli(['peers', 'status', '--config', configFile]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('no peer activity yet');

    const settle = await runCli(['peers', 'settle', 'r2', '--config', configFile, '--all']);
    expect(settle.code).toBe(2);
    expect(settle.stderr).toMatch(/nothing to settle: no peer activity yet/);
    expect(existsSync(dataDir)).toBe(false);
  });

  it('refuses a bad config with the key and the problem', async () => {
    writeFileSync(configFile, '[relay]\ndataDir = "x"\n');
    const result = await runCli(['peers', 'status', '--config', configFile]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^powbridge peers status: .*\nsource: required/);
  });
});

describe('powbridge peers settle', () => {
  it('records part of what we owe, then the rest, and refuses more than we owe', async () => {
    await seedR2();
    const part = await runCli(['peers', 'settle', 'r2', '--config', configFile, '--count', '3']);
    expect(part.stderr).toBe('');
    expect(part.code).toBe(0);
    expect(part.stdout).toMatch(
      /^recorded settlement [A-Za-z0-9_-]{16}: paid r2 3 tickets \(method operator\)\n/,
    );
    expect(part.stdout).toContain('we now owe r2 4 of 7 billed');
    expect(part.stdout).toContain(
      'the running relay delivers it to r2 on its next sync (every 30 s)',
    );
    expect(await balanceOf('r2')).toMatchObject({
      billedToUs: 7,
      settledByUs: 3,
      weOwe: 4,
      pendingSettlements: 1,
    });

    const over = await runCli(['peers', 'settle', 'r2', '--config', configFile, '--count', '5']);
    expect(over.code).toBe(2);
    expect(over.stdout).toBe('');
    expect(over.stderr).toBe(
      'powbridge peers settle: r2 billed us 7 tickets, we settled 3: we owe 4; ' +
        'refusing to record 5 tickets\n',
    );

    const rest = await runCli(['peers', 'settle', 'r2', '--config', configFile, '--all']);
    expect(rest.code).toBe(0);
    expect(rest.stdout).toMatch(/paid r2 4 tickets/);
    expect(rest.stdout).toContain('we now owe r2 0 of 7 billed');

    const again = await runCli(['peers', 'settle', 'r2', '--config', configFile, '--all']);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(
      /nothing to settle: r2 billed us 7 tickets, we settled 7: we owe 0/,
    );

    // What the relay's sync loop will deliver: both settlements, with distinct ids.
    const pending = await withLedger((ledger) => ledger.undeliveredSettlements('r2'));
    expect(pending.map((s) => [s.count, s.method])).toEqual([
      [3, 'operator'],
      [4, 'operator'],
    ]);
    expect(new Set(pending.map((s) => s.id)).size).toBe(2);
    expect(await balanceOf('r2')).toMatchObject({
      settledByUs: 7,
      weOwe: 0,
      pendingSettlements: 2,
    });
    // Settling does not touch what r2 owes us.
    expect(await balanceOf('r2')).toMatchObject({ unpaidToUs: 4, settledToUs: 0 });
  });

  it("pays by work: hands over the peer's tickets from a wallet and marks them spent", async () => {
    await seedR2(); // we owe r2 7
    const walletFile = join(root, 'settle-wallet.sqlite');
    const relay = 'ws://127.0.0.1:1/v1/circuit'; // r2's circuit (its url is http://127.0.0.1:1)
    const wallet = Wallet.open(walletFile);
    const day = utcDay(now());
    for (let i = 0; i < 3; i++) wallet.add(relay, fakeIssued(day), now());
    wallet.add('ws://127.0.0.1:9/v1/circuit', fakeIssued(day), now()); // another relay's
    wallet.close();

    const settleArgs = ['peers', 'settle', 'r2', '--config', configFile, '--all'];
    settleArgs.push('--with-tickets', walletFile);
    const paid = await runCli(settleArgs);
    expect(paid.stderr).toBe('');
    expect(paid.code).toBe(0);
    expect(paid.stdout).toMatch(/3 tickets of r2's own handed over \(method work\)/);
    const pending = await withLedger((ledger) => ledger.undeliveredSettlements('r2'));
    expect(pending).toHaveLength(1);
    expect(pending[0]).toMatchObject({ count: 3, method: 'work' });
    expect(pending[0]?.tickets).toHaveLength(3);
    const after = Wallet.open(walletFile);
    expect(after.list({ state: 'unspent' }).map((t) => t.relay)).toEqual([
      'ws://127.0.0.1:9/v1/circuit',
    ]);
    after.close();

    const none = await runCli(settleArgs);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/holds no unspent tickets of r2/);
  });

  it('refuses zero, negative and missing counts, and --count with --all', async () => {
    await seedR2();
    const settle = (...args: string[]) =>
      runCli(['peers', 'settle', 'r2', '--config', configFile, ...args]);
    for (const count of ['0', '-2', '1.5', 'x']) {
      const result = await settle('--count', count);
      expect(result.code, count).toBe(2);
      expect(result.stderr).toMatch(/expected a whole number of tickets, at least 1/);
    }
    const none = await settle();
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/say how many tickets the payment covers: --count <n> or --all/);
    const both = await settle('--count', '1', '--all');
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/cannot be used with option '--all'/);
    expect(await balanceOf('r2')).toMatchObject({ settledByUs: 0, weOwe: 7 });
  });

  it('refuses an unknown peer and lists the configured ones', async () => {
    await seedR2();
    const result = await runCli(['peers', 'settle', 'r9', '--config', configFile, '--all']);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      `powbridge peers settle: unknown peer "r9"; peers in ${configFile}: r2, r3\n`,
    );
  });
});

describe('powbridge peers with the relay running', () => {
  it("reads and writes the ledger the relay holds open; the relay's ledger sees the settlement", async () => {
    // The relay opens <dataDir>/peers.sqlite itself; r2 is unreachable, so nothing is delivered.
    const { relay } = await startTestRelay({
      dataDir,
      peers: [{ name: 'r2', url: 'http://127.0.0.1:1', identity: R2_IDENTITY }],
      peering: { syncIntervalSeconds: 3600, requestTimeoutSeconds: 1 },
    });
    try {
      const ledger = relay.peering?.ledger;
      if (!ledger) throw new Error('relay has no peering');
      const period = { from: 1, to: 2 };
      await ledger.recordRequestIn(
        'r2',
        { id: 'live', count: 5, digest: 'cc'.repeat(32), period },
        0,
        3,
      );
      expect(await balanceOf('r2')).toMatchObject({ billedToUs: 5, weOwe: 5 });
      const result = await runCli([
        'peers',
        'settle',
        'r2',
        '--config',
        configFile,
        '--count',
        '2',
      ]);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(await ledger.undeliveredSettlements('r2')).toMatchObject([
        { count: 2, method: 'operator' },
      ]);
      expect(await ledger.balance('r2')).toMatchObject({ settledByUs: 2, weOwe: 3 });
    } finally {
      await relay.close();
    }
  }, 30_000);
});

describe('powbridge peers --help', () => {
  it('describes each command', async () => {
    const peers = await runCli(['peers', '--help']);
    expect(peers.code).toBe(0);
    expect(peers.stdout).toMatch(/backup relays \(Protocol 2\)/);
    expect(peers.stdout).toMatch(/status [\s\S]*peer\s+ledger/);
    const status = await runCli(['peers', 'status', '--help']);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/REFUSING once\s+its\s+unpaid/);
    expect(status.stdout).toMatch(/--json/);
    const settle = await runCli(['peers', 'settle', '--help']);
    expect(settle.code).toBe(0);
    expect(settle.stdout).toMatch(/--count <n>/);
    expect(settle.stdout).toMatch(/--all/);
    expect(settle.stdout).toMatch(/next\s+sync/);
    const redeem = await runCli(['tickets', 'redeem', '--help']);
    expect(redeem.code).toBe(0);
    expect(redeem.stdout).toMatch(/--at <url>\s+redeem at this relay instead/);
  });
});

describe('powbridge tickets redeem --at', () => {
  it("spends a relay's ticket at another relay; without --at only points to backups", async () => {
    // One relay plays the backup: the wallet files its ticket under an offline relay's URL.
    const { relay } = await startTestRelay({ dataDir });
    const walletFile = join(root, 'wallet.sqlite');
    const offline = 'ws://127.0.0.1:1/v1/circuit';
    try {
      const day = utcDay(now());
      const issuing = relay.tickets.keys.issuingRsaKey(day);
      if (!issuing) throw new Error('relay has no issuing key today');
      const wallet = Wallet.open(walletFile);
      const keyId = Buffer.from(issuing.key.keyId).toString('hex');
      wallet.add(offline, { ticket: issueTicketV2(issuing.key, day).text, keyId, day }, now());
      wallet.close();
      const redeem = (...args: string[]) =>
        runCli([
          'tickets',
          'redeem',
          '--relay',
          offline,
          '--wallet',
          walletFile,
          '--for-socks',
          ...args,
        ]);

      const unreachable = await redeem();
      expect(unreachable.code).toBe(1);
      expect(unreachable.stdout).toMatch(/no answer from the relay/);
      expect(unreachable.stderr).toMatch(/note: .*backup relays.*--at <url>/s);

      const at = await redeem('--at', relay.url);
      expect(at.stderr).toBe('');
      expect(at.code).toBe(0);
      expect(at.stdout).toMatch(/^ticket 1: granted class paid until /);
      expect(at.stdout).toContain('redeemed 1 of 1');
      const after = Wallet.open(walletFile);
      expect(after.list()).toMatchObject([{ relay: offline, state: 'spent' }]);
      after.close();
    } finally {
      await relay.close();
    }
  }, 30_000);

  it('stops at the first 36 from the backup, which holds for every ticket, and says why', async () => {
    // R2 is R1's backup and stops taking R1's tickets once one billed ticket is unpaid.
    const pair = await startPeeredRelays({ paymentEvery: 1, maxUnpaid: 1 });
    try {
      const r1 = await pair.start(pair.a);
      const r2 = await pair.start(pair.b);
      await r2.peering?.syncPeer('r1');
      expect((await r2.tickets.service.redeem(pair.ticket(pair.a).text)).class).toBe('paid');

      const day = utcDay(now());
      const issuing = r1.tickets.keys.issuingRsaKey(day);
      if (!issuing) throw new Error('r1 has no issuing key today');
      const keyId = Buffer.from(issuing.key.keyId).toString('hex');
      const walletFile = join(root, 'wallet.sqlite');
      const wallet = Wallet.open(walletFile);
      for (let i = 0; i < 3; i++) {
        wallet.add(circuitUrl(r1.url), { ticket: pair.ticket(pair.a).text, keyId, day }, now());
      }
      wallet.close();

      const args = [
        ...['--relay', r1.url, '--at', r2.url, '--count', '3', '--wallet', walletFile],
        '--for-socks',
      ];
      const result = await runCli(['tickets', 'redeem', ...args]);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(1);
      expect(result.stdout.split('\n')).toEqual([
        "ticket 1: refused, code 36 (peer not trusted: tickets of r1 are not accepted here until it settles its debt); the backup takes none of this relay's tickets for now, so no other is tried; kept unspent",
        `redeemed 0 of 3; wallet ${walletFile}: 3 unspent, 0 spent, 0 expired`,
        '',
      ]);
      // R2 was asked once.
      expect((await r2.peering?.status())?.[0]).toMatchObject({
        acceptTickets: false,
        refusing: { reason: 'unpaidLimit', code: 36 },
        refused: { unpaidLimit: 1 },
      });
    } finally {
      await pair.close();
    }
  }, 60_000);

  it('refuses an --at that is not a relay URL', async () => {
    const result = await runCli(['tickets', 'redeem', '--relay', 'ws://a.test', '--at', 'b.test']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--at <url>.*not a URL/);
  });
});
