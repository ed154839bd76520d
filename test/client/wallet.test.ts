import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defaultWalletPath, Wallet } from '../../src/client/wallet.js';
import type { IssuedTicket } from '../../src/client/ticket-client.js';
import { encodeTicketV2 } from '../../src/tickets/ticket-v2.js';
import { fakeIssued } from '../helpers/fake-ticket.js';

const RELAY = 'ws://relay.test/v1/circuit';
const OTHER = 'ws://other.test/v1/circuit';
const TODAY = 20_000;
/** 01:00 UTC on TODAY. */
const NOW = TODAY * 86_400 + 3_600;

let dir: string;
let file: string;
let wallet: Wallet | undefined;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'powbridge-wallet-'));
  file = join(dir, 'wallet.sqlite');
});

afterEach(() => {
  wallet?.close();
  wallet = undefined;
  rmSync(dir, { recursive: true, force: true });
});

const mode = (path: string) => statSync(path).mode & 0o777;

function open(): Wallet {
  wallet = Wallet.open(file);
  return wallet;
}

describe('Wallet files', () => {
  it('creates the file, its -wal and -shm 0600 and a missing directory 0700', () => {
    file = join(dir, 'nested', 'wallet.sqlite');
    const w = open();
    w.add(RELAY, fakeIssued(TODAY), NOW);
    expect(mode(dirname(file))).toBe(0o700);
    for (const path of [file, `${file}-wal`, `${file}-shm`]) {
      expect(existsSync(path)).toBe(true);
      expect(mode(path)).toBe(0o600);
    }
  });

  it('refuses a wallet that group or others can access, saying why and how to fix it', () => {
    open().close();
    wallet = undefined;
    chmodSync(file, 0o640);
    expect(() => Wallet.open(file)).toThrow(
      /accessible to group or others \(mode 0640\).*chmod 600/,
    );
    chmodSync(file, 0o604);
    expect(() => Wallet.open(file)).toThrow(/mode 0604/);
  });

  it('refuses paths without durability and, with create: false, a missing file', () => {
    expect(() => Wallet.open(':memory:')).toThrow(/plain file path/);
    expect(() => Wallet.open('')).toThrow(/plain file path/);
    expect(() => Wallet.open(file, { create: false })).toThrow(`no wallet at ${file}`);
    expect(existsSync(file)).toBe(false);
  });

  it('refuses a file that is not an SQLite database without touching it', () => {
    const precious = 'not a database, but maybe something precious';
    writeFileSync(file, precious, { mode: 0o600 });
    expect(() => Wallet.open(file)).toThrow();
    expect(readFileSync(file, 'utf8')).toBe(precious);
  });

  it('defaults to ~/.powbridge/wallet.sqlite', () => {
    expect(defaultWalletPath('/home/u')).toBe('/home/u/.powbridge/wallet.sqlite');
  });
});

describe('Wallet.add', () => {
  it('stores a ticket as unspent and returns its row; a second add returns the same row', () => {
    const w = open();
    const issued = fakeIssued(TODAY);
    const stored = w.add(RELAY, issued, NOW + 0.7);
    expect(stored).toEqual({
      id: 1,
      ticket: issued.ticket,
      relay: RELAY,
      keyId: issued.keyId,
      day: TODAY,
      state: 'unspent',
      receivedAt: NOW,
      spentAt: null,
      grantExpiresAt: null,
    });
    expect(w.add(OTHER, issued, NOW + 50)).toEqual(stored);
    expect(w.counts()).toEqual({ unspent: 1, spent: 0, expired: 0 });
  });

  it('refuses malformed tickets, a key id or day that is not the ticket’s, and a bad relay', () => {
    const w = open();
    const issued = fakeIssued(TODAY);
    expect(() => w.add(RELAY, { ...issued, ticket: 'garbage' }, NOW)).toThrow();
    expect(() => w.add(RELAY, { ...issued, keyId: 'ff'.repeat(8) }, NOW)).toThrow(/key id or day/);
    expect(() => w.add(RELAY, { ...issued, day: TODAY + 1 }, NOW)).toThrow(/key id or day/);
    expect(() => w.add('', issued, NOW)).toThrow(/relay/);
    expect(() => w.add(RELAY, issued, -1)).toThrow(/time/);
    expect(w.counts()).toEqual({ unspent: 0, spent: 0, expired: 0 });
  });

  it('loses no acknowledged ticket when the writer is SIGKILLed at random moments', async () => {
    const acknowledged = new Set<number>();
    for (let round = 0; round < 5; round++) {
      for (const id of await killWriterAtRandom(file, 20 + Math.random() * 250)) {
        acknowledged.add(id);
      }
      const w = Wallet.open(file);
      try {
        const held = new Set(w.list().map((t) => t.id));
        const lost = [...acknowledged].filter((id) => !held.has(id));
        expect(lost).toEqual([]);
      } finally {
        w.close();
      }
    }
    // Every round counts: its kill is armed only once the writer has acknowledged a ticket
    // (how many more it gets to depends on the machine's speed, so that is not asserted).
    expect(acknowledged.size).toBeGreaterThanOrEqual(5);
  }, 60_000);
});

const tsxLoader = pathToFileURL(
  join(dirname(createRequire(import.meta.url).resolve('tsx')), '..', 'dist', 'loader.mjs'),
).href;
const writerScript = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  'helpers',
  'wallet-writer.ts',
);

/** Run the writer until it has acknowledged a ticket, let it go on for `ms`, SIGKILL it. */
function killWriterAtRandom(walletFile: string, ms: number): Promise<number[]> {
  const child = spawn(process.execPath, ['--import', tsxLoader, writerScript, walletFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    child.stdout.on('data', () => {
      timer ??= setTimeout(() => child.kill('SIGKILL'), ms);
    });
    child.on('exit', (_code, signal) => {
      clearTimeout(timer);
      if (signal !== 'SIGKILL') return reject(new Error(`writer exited on its own: ${err}`));
      // Only whole lines count: a line cut by the kill was never acknowledged.
      const ids = [...out.matchAll(/^stored (\d+)\n/gm)].map((m) => Number(m[1]));
      resolve(ids);
    });
  });
}

describe('Wallet states', () => {
  it('markSpent records time and grant once; a settled ticket keeps its first outcome', () => {
    const w = open();
    const a = w.add(RELAY, fakeIssued(TODAY), NOW);
    const b = w.add(RELAY, fakeIssued(TODAY), NOW);
    expect(w.markSpent(a.id, NOW + 10.5, NOW + 610)).toBe(true);
    expect(w.markSpent(a.id, NOW + 20)).toBe(false);
    expect(w.markExpired(a.id)).toBe(false);
    expect(w.markExpired(b.id)).toBe(true);
    expect(w.markSpent(b.id, NOW + 30)).toBe(false);
    expect(w.list({ state: 'spent' })).toMatchObject([
      { id: a.id, state: 'spent', spentAt: NOW + 10, grantExpiresAt: NOW + 610 },
    ]);
    expect(w.list({ state: 'expired' })).toMatchObject([
      { id: b.id, spentAt: null, grantExpiresAt: null },
    ]);
    expect(w.markSpent(999, NOW)).toBe(false);
    expect(() => w.markSpent(0, NOW)).toThrow(/bad ticket id/);
  });

  it('expire marks unspent tickets older than yesterday, and nothing else', () => {
    const w = open();
    const old = w.add(RELAY, fakeIssued(TODAY - 2), NOW);
    const yesterday = w.add(RELAY, fakeIssued(TODAY - 1), NOW);
    const today = w.add(RELAY, fakeIssued(TODAY), NOW);
    const spentOld = w.add(RELAY, fakeIssued(TODAY - 5), NOW);
    w.markSpent(spentOld.id, NOW);
    expect(w.expire(NOW)).toBe(1);
    expect(w.expire(NOW)).toBe(0);
    const states = new Map(w.list().map((t) => [t.id, t.state]));
    expect(states.get(old.id)).toBe('expired');
    expect(states.get(yesterday.id)).toBe('unspent');
    expect(states.get(today.id)).toBe('unspent');
    expect(states.get(spentOld.id)).toBe('spent');
    expect(w.counts()).toEqual({ unspent: 2, spent: 1, expired: 1 });
  });

  it('prune deletes settled tickets older than keepDays and never an unspent one', () => {
    const w = open();
    const ancientUnspent = w.add(RELAY, fakeIssued(TODAY - 100), NOW - 100 * 86_400);
    const spentLongAgo = w.add(RELAY, fakeIssued(TODAY - 40), NOW);
    w.markSpent(spentLongAgo.id, NOW - 40 * 86_400);
    const spentRecently = w.add(RELAY, fakeIssued(TODAY), NOW);
    w.markSpent(spentRecently.id, NOW);
    const expiredLongAgo = w.add(RELAY, fakeIssued(TODAY - 50), NOW);
    w.markExpired(expiredLongAgo.id);
    const expiredRecently = w.add(RELAY, fakeIssued(TODAY - 3), NOW);
    w.markExpired(expiredRecently.id);

    expect(w.prune(NOW, 30)).toBe(2);
    expect(w.list().map((t) => t.id)).toEqual([
      ancientUnspent.id,
      spentRecently.id,
      expiredRecently.id,
    ]);
    // keepDays 0: everything settled before now goes; the unspent ticket still stays.
    expect(w.prune(NOW + 1, 0)).toBe(2);
    expect(w.list().map((t) => t.id)).toEqual([ancientUnspent.id]);
    expect(() => w.prune(NOW, -1)).toThrow(/keepDays/);
    expect(() => w.prune(NOW, 1.5)).toThrow(/keepDays/);
  });
});

describe('Wallet.nextUnspent', () => {
  it('picks the ticket that expires first, oldest received first, for that relay only', () => {
    const w = open();
    const todayLate = w.add(RELAY, fakeIssued(TODAY), NOW + 50);
    const todayEarly = w.add(RELAY, fakeIssued(TODAY), NOW + 10);
    const yesterday = w.add(RELAY, fakeIssued(TODAY - 1), NOW + 90);
    w.add(OTHER, fakeIssued(TODAY - 1), NOW);

    expect(w.nextUnspent(RELAY, NOW)?.id).toBe(yesterday.id);
    w.markSpent(yesterday.id, NOW);
    expect(w.nextUnspent(RELAY, NOW)?.id).toBe(todayEarly.id);
    expect(w.nextUnspent(RELAY, NOW, [todayEarly.id])?.id).toBe(todayLate.id);
    expect(w.nextUnspent(RELAY, NOW, [todayEarly.id, todayLate.id])).toBeUndefined();
    expect(w.nextUnspent('ws://nowhere.test/v1/circuit', NOW)).toBeUndefined();
  });

  it('offers only tickets redeemable now: issued today or yesterday (UTC)', () => {
    const w = open();
    w.add(RELAY, fakeIssued(TODAY - 2), NOW);
    w.add(RELAY, fakeIssued(TODAY + 1), NOW);
    expect(w.nextUnspent(RELAY, NOW)).toBeUndefined();
    const yesterday = w.add(RELAY, fakeIssued(TODAY - 1), NOW);
    expect(w.nextUnspent(RELAY, TODAY * 86_400 + 86_399)?.id).toBe(yesterday.id);
    // At midnight yesterday's ticket is past its second day; tomorrow's becomes redeemable.
    expect(w.nextUnspent(RELAY, (TODAY + 1) * 86_400)?.day).toBe(TODAY + 1);
    expect(w.counts().unspent).toBe(3);
  });
});

/** A well-formed v2 ticket (partially blind RSA) with a random signature: the wallet checks encodings only. */
function fakeIssuedV2(day: number, keyIdHex = '0a0b0c0d0e0f1011'): IssuedTicket {
  const ticket = encodeTicketV2({
    keyId: new Uint8Array(Buffer.from(keyIdHex, 'hex')),
    day,
    nonce: new Uint8Array(randomBytes(32)),
    signature: new Uint8Array(randomBytes(256)),
  });
  return { ticket, keyId: keyIdHex, day };
}

describe('v2 tickets (partially blind RSA, docs/design.md §6.5)', () => {
  it('stores a v2 ticket with the key id and day read from the ticket, and lists it', () => {
    const w = open();
    const issued = fakeIssuedV2(TODAY);
    expect(issued.ticket).toHaveLength(402);
    const stored = w.add(RELAY, issued, NOW);
    expect(stored).toMatchObject({
      ticket: issued.ticket,
      keyId: '0a0b0c0d0e0f1011',
      day: TODAY,
      state: 'unspent',
    });
    expect(w.add(RELAY, issued, NOW + 5)).toEqual(stored);
    expect(w.list()).toEqual([stored]);
  });

  it('refuses a v2 ticket whose key id or day is not the stored one, or that is malformed', () => {
    const w = open();
    const issued = fakeIssuedV2(TODAY);
    expect(() => w.add(RELAY, { ...issued, keyId: 'ff'.repeat(8) }, NOW)).toThrow(/key id or day/);
    expect(() => w.add(RELAY, { ...issued, day: TODAY - 1 }, NOW)).toThrow(/key id or day/);
    expect(() => w.add(RELAY, { ...issued, ticket: issued.ticket.slice(0, -4) }, NOW)).toThrow(
      /301 bytes/,
    );
    const bytes = Buffer.from(issued.ticket, 'base64url');
    bytes[0] = 3;
    expect(() => w.add(RELAY, { ...issued, ticket: bytes.toString('base64url') }, NOW)).toThrow(
      /unknown version/,
    );
    // A v2 body under the v1 version byte is judged as v1, and refused as one.
    bytes[0] = 1;
    expect(() => w.add(RELAY, { ...issued, ticket: bytes.toString('base64url') }, NOW)).toThrow(
      /expected a base64url string/,
    );
    expect(w.counts()).toEqual({ unspent: 0, spent: 0, expired: 0 });
  });

  it('v1 and v2 tickets share the wallet: expiry order, states and expiry apply to both', () => {
    const w = open();
    const v1Today = w.add(RELAY, fakeIssued(TODAY), NOW + 1);
    const v2Yesterday = w.add(RELAY, fakeIssuedV2(TODAY - 1), NOW + 2);
    const v2Old = w.add(RELAY, fakeIssuedV2(TODAY - 2), NOW + 3);
    const v2Today = w.add(RELAY, fakeIssuedV2(TODAY), NOW);
    expect(w.nextUnspent(RELAY, NOW)?.id).toBe(v2Yesterday.id);
    w.markSpent(v2Yesterday.id, NOW);
    expect(w.nextUnspent(RELAY, NOW)?.id).toBe(v2Today.id);
    expect(w.nextUnspent(RELAY, NOW, [v2Today.id])?.id).toBe(v1Today.id);
    expect(w.expire(NOW)).toBe(1);
    expect(w.list({ state: 'expired' }).map((t) => t.id)).toEqual([v2Old.id]);
  });
});
