import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { parseIntoClientConfig } from 'pg-connection-string';
import { SqlitePeerLedger } from '../../src/peers/peer-ledger.js';
import type { GrantStorage } from '../../src/storage/grant-storage.js';
import type { PeerLedger } from '../../src/storage/peer-ledger.js';
import type { IssuedCountStorage } from '../../src/storage/issued-counter.js';
import { PostgresIssuedCounts } from '../../src/storage/postgres-issued-counts.js';
import { PostgresSessionSlots } from '../../src/storage/postgres-session-slots.js';
import { MemorySessionSlots, type SessionSlots } from '../../src/storage/session-slots.js';
import { IssuedStore } from '../../src/tickets/issued-store.js';
import { PostgresGrantStorage } from '../../src/storage/postgres-grant-storage.js';
import { PostgresPeerLedger } from '../../src/storage/postgres-peer-ledger.js';
import { PostgresSpentLog } from '../../src/storage/postgres-spent-log.js';
import type { SpentLog } from '../../src/storage/spent-log.js';
import { GrantStore } from '../../src/tickets/grant-store.js';
import { SpentStore } from '../../src/tickets/spent-store.js';
import type { TestPostgres } from './postgres.js';

/**
 * The two storage engines behind one face, so one suite runs against both (test/storage):
 * SQLite files in a temporary directory, and PostgreSQL databases on a test server
 * (test/helpers/postgres.ts). Each `fresh()` starts an empty place (a directory, a database);
 * every `open…` is a new connection to it (a file opened again, a pool of its own), as a
 * restart or another instance would be.
 */

export interface GrantRow {
  grantId: Buffer;
  until: number;
  count: number;
}

export interface StoreEngine {
  readonly name: 'SQLite' | 'PostgreSQL';
  /** An empty place for the next test; what the last one opened is closed. */
  fresh(): Promise<void>;
  openSpent(): Promise<SpentLog>;
  openGrants(onError?: (err: unknown) => void): Promise<GrantStorage>;
  /** The peer ledger (Protocol 2): `peers.sqlite`, or the peer_ tables of the database. */
  openLedger(): Promise<PeerLedger>;
  /** The grant rows as stored, by until then id, read over a connection of its own. */
  grantRows(): Promise<GrantRow[]>;
  /**
   * AO session slots: one relay's memory (the SQLite relay's engine, the same object for
   * every open of one place) or the family's database (a pool of its own per open).
   */
  openSlots(): Promise<SessionSlots>;
  /** Issued-ticket counts: `issued.sqlite` in the place, or the database. */
  openIssuedCounts(): Promise<IssuedCountStorage>;
  /** Close what is open and remove the place. */
  closeAll(): Promise<void>;
}

/** Closes everything opened since the last call, tolerating stores already closed. */
class Opened {
  private readonly stores: { close(): Promise<void> }[] = [];

  add<T extends { close(): Promise<void> }>(store: T): T {
    this.stores.push(store);
    return store;
  }

  async closeAll(): Promise<void> {
    for (const store of this.stores.splice(0)) await store.close().catch(() => undefined);
  }
}

export function sqliteEngine(): StoreEngine {
  const opened = new Opened();
  let dir: string | null = null;
  let slots: MemorySessionSlots | null = null;
  const place = () => {
    if (dir === null) throw new Error('call fresh() first');
    return dir;
  };
  const closeAll = async () => {
    await opened.closeAll();
    if (dir !== null) rmSync(dir, { recursive: true, force: true });
    dir = null;
  };
  return {
    name: 'SQLite',
    async fresh() {
      await closeAll();
      dir = mkdtempSync(join(tmpdir(), 'powbridge-store-'));
      slots = new MemorySessionSlots();
    },
    openSlots() {
      place();
      slots ??= new MemorySessionSlots();
      return Promise.resolve(slots);
    },
    openIssuedCounts: () =>
      Promise.resolve(opened.add(IssuedStore.open(join(place(), 'issued.sqlite')))),
    openSpent: () => Promise.resolve(opened.add(SpentStore.open(join(place(), 'spent.sqlite')))),
    openGrants: (onError) =>
      Promise.resolve(
        opened.add(GrantStore.open(join(place(), 'grants.sqlite'), onError ? { onError } : {})),
      ),
    openLedger: () =>
      Promise.resolve(opened.add(SqlitePeerLedger.open(join(place(), 'peers.sqlite')))),
    grantRows() {
      const db = new Database(join(place(), 'grants.sqlite'), {
        readonly: true,
        fileMustExist: true,
      });
      try {
        const rows = db
          .prepare<[], { grant_id: Buffer; until: number; count: number }>(
            'SELECT grant_id, until, count FROM grant_tickets ORDER BY until, grant_id',
          )
          .all();
        return Promise.resolve(
          rows.map((r) => ({ grantId: r.grant_id, until: r.until, count: r.count })),
        );
      } finally {
        db.close();
      }
    },
    closeAll,
  };
}

/**
 * One database per test file, and a schema of its own per test (search_path in the URL's
 * `options`): creating a schema takes milliseconds, a database hundreds of them.
 */
export function postgresEngine(server: () => TestPostgres): StoreEngine {
  const opened = new Opened();
  let database: string | null = null;
  let url: string | null = null;
  let schemas = 0;
  const place = () => {
    if (url === null) throw new Error('call fresh() first');
    // The wait for a pooled connection is a hang limit here, not the relay's 5 s: a thousand
    // spends queued on four connections of a loaded machine may wait longer for their turn.
    return { url, password: server().password, poolSize: 4, connectTimeoutMs: 60_000 };
  };
  return {
    name: 'PostgreSQL',
    async fresh() {
      await opened.closeAll();
      database ??= await server().createDatabase();
      const schema = `test_${++schemas}`;
      await query(database, server().password, `CREATE SCHEMA ${schema}`);
      url = `${database}?options=${encodeURIComponent(`-c search_path=${schema}`)}`;
    },
    openSpent: async () => opened.add(await PostgresSpentLog.open(place())),
    openGrants: async (onError) =>
      opened.add(await PostgresGrantStorage.open({ ...place(), ...(onError ? { onError } : {}) })),
    openSlots: async () => opened.add(await PostgresSessionSlots.open(place())),
    openIssuedCounts: async () => opened.add(await PostgresIssuedCounts.open(place())),
    openLedger: async () => opened.add(await PostgresPeerLedger.open(place())),
    async grantRows() {
      const rows = await query<{ grant_id: Buffer; until: string; count: number }>(
        place().url,
        server().password,
        'SELECT grant_id, until, count FROM grant_tickets ORDER BY until, grant_id',
      );
      return rows.map((r) => ({ grantId: r.grant_id, until: Number(r.until), count: r.count }));
    },
    async closeAll() {
      await opened.closeAll();
      url = null;
    },
  };
}

/** One query over a connection of its own. */
export async function query<R extends object = object>(
  url: string,
  password: string,
  text: string,
): Promise<R[]> {
  const client = new pg.Client({ ...parseIntoClientConfig(url), password });
  await client.connect();
  try {
    return (await client.query<R>(text)).rows;
  } finally {
    await client.end();
  }
}
