import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcErrorCode } from '../../src/protocol/errors.js';
import { StorageUnavailableError } from '../../src/storage/errors.js';
import { PostgresDatabase } from '../../src/storage/postgres.js';
import { PostgresGrantStorage } from '../../src/storage/postgres-grant-storage.js';
import { POSTGRES_SCHEMA_VERSION } from '../../src/storage/postgres-schema.js';
import { PostgresSpentLog } from '../../src/storage/postgres-spent-log.js';
import { GrantBook, grantId } from '../../src/tickets/grant-book.js';
import { encodePoint } from '../../src/tickets/group.js';
import { Redeemer } from '../../src/tickets/redeemer.js';
import { generateSignerKey } from '../../src/tickets/scheme.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { query } from '../helpers/store-engines.js';
import { acceptingKeyring, csprng, issueTicket } from '../helpers/ticket-issue.js';

/**
 * What only the PostgreSQL engine has (src/storage/postgres*.ts): its schema and migrations,
 * its refusal of a server that would lose commits, its password handling, and what happens
 * when the server crashes or goes away under a running relay's stores. The contract both
 * engines keep is in spent-log.test.ts and grant-storage.test.ts.
 */

const DAY = 20_413;
const T0 = DAY * 86_400 + 3_600;
const KEY_ID = new Uint8Array(8).fill(3);

let server: TestPostgres;
beforeAll(async () => {
  server = await startPostgres();
});
afterAll(async () => {
  await server?.stop();
});

const serial = (i: number) => new Uint8Array(createHash('sha256').update(`pg/${i}`).digest());
const spendOf = (i: number) => ({ serial: serial(i), keyId: KEY_ID, day: DAY, at: T0 });
const open = (url: string, password = server.password) => PostgresDatabase.open({ url, password });

describe('the schema', () => {
  it('is created at the first open, once, however many instances open the database at once', async () => {
    const url = await server.createDatabase();
    const databases = await Promise.all([open(url), open(url), open(url)]);
    await Promise.all(databases.map((d) => d.close()));
    expect(await query(url, server.password, 'SELECT version FROM schema_version')).toEqual([
      { version: POSTGRES_SCHEMA_VERSION },
    ]);
    const tables = await query<{ table_name: string }>(
      url,
      server.password,
      `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'
       ORDER BY table_name`,
    );
    expect(tables.map((t) => t.table_name)).toEqual([
      'ao_sessions',
      'grant_tickets',
      'issued_tickets',
      'key_vault',
      'key_vault_head',
      'peer_billed_conflicts',
      'peer_conflicts',
      'peer_cursors',
      'peer_requests_in',
      'peer_requests_out',
      'peer_served',
      'peer_settlements',
      'schema_version',
      'spent',
      'spent_head',
    ]);
    // Opening again migrates nothing and keeps the data.
    const log = await PostgresSpentLog.open({ url, password: server.password });
    expect(await log.trySpend(spendOf(1))).toEqual({ spent: true, seq: 1 });
    await log.close();
    const again = await PostgresSpentLog.open({ url, password: server.password });
    expect(await again.count()).toBe(1);
    await again.close();
  });

  it('refuses a database a newer powbridge migrated, and changes nothing in it', async () => {
    const url = await server.createDatabase();
    await (await open(url)).close();
    await query(url, server.password, 'UPDATE schema_version SET version = 99');
    await expect(open(url)).rejects.toThrow(
      new RegExp(
        `cannot migrate postgres://powbridge@127\\.0\\.0\\.1:${server.port}/.*schema version 99 is newer`,
      ),
    );
    expect(await query(url, server.password, 'SELECT version FROM schema_version')).toEqual([
      { version: 99 },
    ]);
  });
});

describe('durability and credentials', () => {
  it('refuses a server running with fsync = off', async () => {
    const url = await server.createDatabase();
    const admin = server.url('postgres');
    await query(admin, server.password, 'ALTER SYSTEM SET fsync = off');
    await query(admin, server.password, 'SELECT pg_reload_conf()');
    try {
      await expect(open(url)).rejects.toThrow(/runs with fsync = off/);
    } finally {
      await query(admin, server.password, 'ALTER SYSTEM RESET fsync');
      await query(admin, server.password, 'SELECT pg_reload_conf()');
    }
    await (await open(url)).close();
  });

  it('turns synchronous_commit back on for its own sessions where the database has it off', async () => {
    const url = await server.createDatabase('sync_off');
    await query(url, server.password, 'ALTER DATABASE sync_off SET synchronous_commit = off');
    expect(await query(url, server.password, 'SHOW synchronous_commit')).toEqual([
      { synchronous_commit: 'off' },
    ]);
    const database = await open(url);
    try {
      const { rows } = await database.pool.query('SHOW synchronous_commit');
      expect(rows).toEqual([{ synchronous_commit: 'on' }]);
    } finally {
      await database.close();
    }
  });

  it('takes the password from PGPASSWORD; a wrong one is refused without being repeated', async () => {
    const url = await server.createDatabase();
    const wrong = 'not-the-password-4711';
    const refusal = await open(url, wrong).catch((err: unknown) => err);
    expect(refusal).toBeInstanceOf(Error);
    const message = String((refusal as Error).message);
    expect(message).toMatch(/password authentication failed/);
    expect(message).toContain(`postgres://powbridge@127.0.0.1:${server.port}/`);
    expect(message).not.toContain(wrong);
    const saved = process.env.PGPASSWORD;
    process.env.PGPASSWORD = server.password;
    try {
      const database = await PostgresDatabase.open({ url });
      await database.close();
    } finally {
      if (saved === undefined) delete process.env.PGPASSWORD;
      else process.env.PGPASSWORD = saved;
    }
  });
});

// These stop and start the file's server: they run last, one after the other.
describe('when the server crashes or goes away', () => {
  it('keeps every committed spend and grant across a crash, and the pools reconnect', async () => {
    const url = await server.createDatabase();
    const database = await open(url);
    const connectionErrors: unknown[] = [];
    database.pool.on('error', (err) => connectionErrors.push(err));
    const spent = new PostgresSpentLog(database);
    const grants = new PostgresGrantStorage(database);
    try {
      await spent.trySpendMany([spendOf(1), spendOf(2)]);
      await grants.record(grantId('token-a'), T0 + 600);
      await grants.record(grantId('token-a'), T0 + 660);
      // A crash: no checkpoint, the WAL alone brings the commits back.
      await server.restart('immediate');
      // The same pool again, on fresh connections.
      expect(await spent.isSpent(serial(1))).toBe(true);
      expect(await spent.trySpend(spendOf(2))).toEqual({ spent: false });
      expect(await spent.trySpend(spendOf(3))).toEqual({ spent: true, seq: 3 });
      const book = new GrantBook();
      expect(await grants.restore(book, T0)).toBe(1);
      expect(book.lookup('token-a', T0)).toEqual({ expiresAt: T0 + 660, tickets: 2 });
      await grants.record(grantId('token-b'), T0 + 600);
      expect(await grants.count()).toBe(3);
    } finally {
      await grants.close();
      await database.close();
    }
  });

  it('answers "unavailable" while it is down, 38 to a redemption, and recovers when it is back', async () => {
    const url = await server.createDatabase();
    const database = await PostgresDatabase.open({
      url,
      password: server.password,
      connectTimeoutMs: 2_000,
      onError: () => {},
    });
    const grantErrors: unknown[] = [];
    const spent = new PostgresSpentLog(database);
    const grants = new PostgresGrantStorage(database, { onError: (err) => grantErrors.push(err) });
    const key = generateSignerKey(csprng);
    const keyring = acceptingKeyring([
      { publicKey: encodePoint(key.y), notBeforeDay: DAY, notAfterDay: DAY },
    ]);
    const redeemer = new Redeemer({ keyring, store: spent, grantStore: grants });
    const ticket = issueTicket(key, DAY).text;
    try {
      await server.down('fast');
      await expect(spent.trySpend(spendOf(1))).rejects.toBeInstanceOf(StorageUnavailableError);
      await expect(spent.isSpent(serial(1))).rejects.toBeInstanceOf(StorageUnavailableError);
      await expect(redeemer.redeemBatched(ticket, T0)).rejects.toMatchObject({
        code: RpcErrorCode.relayOverloaded,
        data: { retryAfter: 5 },
      });
      // Counted with the redemptions shed for load (overloaded_total{request="redeem"}).
      expect(redeemer.overloaded()).toBe(1);
      // A grant write that fails is reported, and the redemption would still be answered.
      await expect(grants.record(grantId('while-down'), T0 + 600)).resolves.toBeUndefined();
      expect(grantErrors).toHaveLength(1);
      await server.up();
      // Nothing was recorded: the same ticket is good now.
      await expect(redeemer.redeemBatched(ticket, T0)).resolves.toMatchObject({ class: 'paid' });
      expect(await spent.count()).toBe(1);
      expect(await grants.count()).toBe(1);
    } finally {
      await grants.close();
      await database.close();
    }
  });
});
