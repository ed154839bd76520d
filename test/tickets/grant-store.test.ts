import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GrantBook, grantId } from '../../src/tickets/grant-book.js';
import { GrantStore } from '../../src/tickets/grant-store.js';
import { Redeemer } from '../../src/tickets/redeemer.js';
import { encodePoint } from '../../src/tickets/group.js';
import { generateSignerKey } from '../../src/tickets/scheme.js';
import { SpentStore } from '../../src/tickets/spent-store.js';
import { acceptingKeyring, csprng, issueTicket } from '../helpers/ticket-issue.js';

/**
 * Grants on disk (docs/design.md §6.3): what a restart restores, what it drops, and that the
 * file never holds a token. Every "restart" closes the store and opens the file again.
 */

const WINDOW = 600;
const T0 = 1_800_000_000;

let dir: string;
let file: string;
const open: GrantStore[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'powbridge-grants-'));
  file = join(dir, 'grants.sqlite');
});
afterEach(() => {
  for (const store of open.splice(0)) store.close();
  rmSync(dir, { recursive: true, force: true });
});

function openStore(onError?: (err: unknown) => void): GrantStore {
  const store = GrantStore.open(file, onError ? { onError } : {});
  open.push(store);
  return store;
}

/** Close the store and read its grants back into a new book, as a relay start does. */
function restart(store: GrantStore, now: number): { store: GrantStore; book: GrantBook } {
  open.splice(open.indexOf(store), 1);
  store.close();
  const again = openStore();
  const book = new GrantBook();
  again.restore(book, now);
  return { store: again, book };
}

/** Rows on disk, read with a connection of its own. */
function rowsOnDisk(): { grant_id: Buffer; until: number; count: number }[] {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return db
      .prepare<[], { grant_id: Buffer; until: number; count: number }>(
        'SELECT grant_id, until, count FROM grant_tickets ORDER BY until',
      )
      .all();
  } finally {
    db.close();
  }
}

describe('GrantStore', () => {
  it('a grant survives a restart of the store', async () => {
    const store = openStore();
    await store.record(grantId('token-a'), T0 + WINDOW);
    const { book } = restart(store, T0 + 10);
    expect(book.size).toBe(1);
    expect(book.lookup('token-a', T0 + 10)).toEqual({ expiresAt: T0 + WINDOW, tickets: 1 });
    expect(book.lookup('token-b', T0 + 10)).toBeUndefined();
    expect(book.lookup('token-a', T0 + WINDOW)).toBeUndefined();
  });

  it('top-ups persist: each ticket counts for its own window after a restart', async () => {
    const store = openStore();
    const id = grantId('topped');
    await store.record(id, T0 + WINDOW);
    // Two top-ups in the same second merge into one run, as in the book.
    await Promise.all([store.record(id, T0 + 100 + WINDOW), store.record(id, T0 + 100 + WINDOW)]);
    await store.record(id, T0 + 200 + WINDOW);
    expect(rowsOnDisk().map((r) => r.count)).toEqual([1, 2, 1]);
    const { book } = restart(store, T0 + 300);
    expect(book.lookup('topped', T0 + 300)).toEqual({ expiresAt: T0 + 800, tickets: 4 });
    expect(book.lookup('topped', T0 + WINDOW)).toEqual({ expiresAt: T0 + 800, tickets: 3 });
    expect(book.lookup('topped', T0 + 750)).toEqual({ expiresAt: T0 + 800, tickets: 1 });
    // A top-up after the restart adds to the restored grant.
    expect(book.topUp('topped', T0 + 750 + WINDOW, T0 + 750)).toEqual({
      expiresAt: T0 + 1_350,
      tickets: 2,
    });
  });

  it('expired grants are not restored and are deleted from disk', async () => {
    const store = openStore();
    await store.record(grantId('old'), T0 + 100);
    await store.record(grantId('lapsing'), T0 + 100);
    await store.record(grantId('lapsing'), T0 + 700);
    await store.record(grantId('live'), T0 + 900);
    const { store: again, book } = restart(store, T0 + 100);
    expect(book.size).toBe(2);
    expect(book.lookup('old', T0 + 100)).toBeUndefined();
    expect(book.lookup('lapsing', T0 + 100)).toEqual({ expiresAt: T0 + 700, tickets: 1 });
    expect(book.lookup('live', T0 + 100)).toEqual({ expiresAt: T0 + 900, tickets: 1 });
    expect(rowsOnDisk().map((r) => r.until)).toEqual([T0 + 700, T0 + 900]);
    // The relay's minute sweep deletes what lapsed since.
    expect(again.sweep(T0 + 700)).toBe(1);
    expect(again.count()).toBe(1);
  });

  it('restores grants in expiry order, so the book still trims from the front', async () => {
    const store = openStore();
    await store.record(grantId('late'), T0 + 900);
    await store.record(grantId('early'), T0 + 500);
    const { book } = restart(store, T0);
    // Adding a grant after 'early' expired trims it; 'late' stays.
    book.add('new', { expiresAt: T0 + 600 + WINDOW, tickets: 1 }, T0 + 600);
    expect(book.size).toBe(2);
    expect(book.lookup('late', T0 + 600)).toBeDefined();
  });

  it('keeps only the SHA-256 of the token, in a 0600 file', async () => {
    const token = Buffer.from(csprng(32)).toString('base64url');
    const store = openStore();
    await store.record(grantId(token), T0 + WINDOW);
    const [row] = rowsOnDisk();
    expect(row?.grant_id).toEqual(createHash('sha256').update(token).digest());
    for (const path of [file, `${file}-wal`, `${file}-shm`]) {
      if (!existsSync(path)) continue;
      expect(statSync(path).mode & 0o777).toBe(0o600);
      const bytes = readFileSync(path);
      expect(bytes.includes(Buffer.from(token))).toBe(false);
      expect(bytes.includes(Buffer.from(token, 'base64url'))).toBe(false);
    }
  });

  it('commits the writes of one turn together, before any of them resolves', async () => {
    const store = openStore();
    const ids = Array.from({ length: 5 }, (_, i) => grantId(`batch-${i}`));
    let resolved = 0;
    const writes = ids.map((id) => store.record(id, T0 + WINDOW).then(() => resolved++));
    expect(rowsOnDisk()).toHaveLength(0);
    await writes[0];
    // Visible to another connection, so committed, by the time the first one resolves.
    expect(rowsOnDisk()).toHaveLength(5);
    await Promise.all(writes);
    expect(resolved).toBe(5);
  });

  it('reports a failed write and still resolves it (the grant lasts until restart)', async () => {
    const errors: unknown[] = [];
    const store = openStore((err) => errors.push(err));
    open.splice(open.indexOf(store), 1);
    store.close();
    await expect(store.record(grantId('after-close'), T0 + WINDOW)).resolves.toBeUndefined();
    expect(errors).toHaveLength(1);
  });

  it('refuses a malformed grant id or expiry', () => {
    const store = openStore();
    expect(() => store.recordNow('short', T0)).toThrow(/32 bytes/);
    expect(() => store.recordNow(grantId('x'), 1.5)).toThrow(/unix seconds/);
  });
});

describe('Redeemer with a grant store', () => {
  it('answers a redemption only once its grant is on disk, and top-ups too', async () => {
    const day = Math.floor(T0 / 86_400);
    const key = generateSignerKey(csprng);
    const keyring = acceptingKeyring([
      { publicKey: encodePoint(key.y), notBeforeDay: day, notAfterDay: day },
    ]);
    const spent = SpentStore.open(join(dir, 'spent.sqlite'));
    try {
      const store = openStore();
      const redeemer = new Redeemer({ keyring, store: spent, grantStore: store });
      const grant = await redeemer.redeemBatched(issueTicket(key, day).text, T0);
      expect(rowsOnDisk()).toEqual([
        {
          grant_id: Buffer.from(grantId(grant.token), 'base64url'),
          until: T0 + WINDOW,
          count: 1,
        },
      ]);
      const topped = await redeemer.redeemBatched(issueTicket(key, day).text, T0 + 5, grant.token);
      expect(topped.token).toBe(grant.token);
      expect(rowsOnDisk().map((r) => [r.until, r.count])).toEqual([
        [T0 + WINDOW, 1],
        [T0 + 5 + WINDOW, 1],
      ]);
      const { book } = restart(store, T0 + 10);
      expect(book.lookup(grant.token, T0 + 10)).toEqual({ expiresAt: T0 + 605, tickets: 2 });
    } finally {
      spent.close();
    }
  });
});
