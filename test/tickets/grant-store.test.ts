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
 * Grants in the SQLite file (docs/design.md §6.3): that the file never holds a token, and the
 * redeemer answering only once its grant is on disk. Every "restart" closes the store and
 * opens the file again.
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
afterEach(async () => {
  for (const store of open.splice(0)) await store.close();
  rmSync(dir, { recursive: true, force: true });
});

function openStore(onError?: (err: unknown) => void): GrantStore {
  const store = GrantStore.open(file, onError ? { onError } : {});
  open.push(store);
  return store;
}

/** Close the store and read its grants back into a new book, as a relay start does. */
async function restart(store: GrantStore, now: number): Promise<GrantBook> {
  open.splice(open.indexOf(store), 1);
  await store.close();
  const book = new GrantBook();
  await openStore().restore(book, now);
  return book;
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

// What every grant storage does, restarts included: test/storage/grant-storage.test.ts.
describe('GrantStore (SQLite)', () => {
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

  it('writes nothing in the turn a grant is recorded, and all of the turn in one commit', async () => {
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
      const book = await restart(store, T0 + 10);
      expect(book.lookup(grant.token, T0 + 10)).toEqual({ expiresAt: T0 + 605, tickets: 2 });
    } finally {
      await spent.close();
    }
  });
});
