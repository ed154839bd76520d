import { existsSync, mkdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type Database from 'better-sqlite3';
import { checkDurablePath, createPrivateFile, openDurableDb } from '../lib/durable-db.js';
import { utcDay } from '../tickets/keyring.js';
import { decodeAnyTicket } from '../tickets/any-ticket.js';
import type { IssuedTicket } from './ticket-client.js';

/**
 * The client's ticket wallet (docs/design.md §9): every ticket the miner earned, on disk, with its
 * state. A ticket is money, so the one rule is that none is ever lost once acknowledged: `add`
 * commits (WAL, `synchronous = FULL`) before it returns, and the miner acknowledges a ticket
 * (log line, status count) only after that. Rows leave the table only through `prune`, and
 * only once spent or expired.
 *
 * Beside the tickets it keeps, per relay, at most one grant that `powbridge tickets redeem
 * --for-socks` obtained for the SOCKS front of `powbridge mine` (docs/design.md §9); the table
 * is created on open, so older wallets gain it without a new schema version.
 *
 * The file is as private as a key file: a ticket is a bearer token (whoever holds the string
 * can spend it) and the rows say when, and at which relay, this user mined. So the file and
 * SQLite's -wal and -shm beside it are 0600, and a file that others can read is refused
 * rather than silently fixed: its tickets may already have been copied.
 */

export type TicketState = 'unspent' | 'spent' | 'expired';
export const TICKET_STATES: readonly TicketState[] = ['unspent', 'spent', 'expired'];

export interface WalletTicket {
  id: number;
  /** The base64url ticket: a bearer token, never print it unasked. */
  ticket: string;
  /** Where it was earned (the relay's circuit URL), and so where it is redeemed. */
  relay: string;
  keyId: string;
  day: number;
  state: TicketState;
  /** Unix seconds. */
  receivedAt: number;
  spentAt: number | null;
  grantExpiresAt: number | null;
}

export type WalletCounts = Record<TicketState, number>;

/** A grant handed to the SOCKS front through the wallet: the token is a bearer secret. */
export interface HandedGrant {
  token: string;
  /** Unix seconds. */
  expiresAt: number;
}

export interface WalletOptions {
  /** Create the file (and its directory, 0700) if missing; default true. */
  create?: boolean;
  /** How long a write waits for another process's lock (the miner and the CLI share the file). */
  busyTimeoutMs?: number;
}

/** A ticket is redeemable on its issue day and the next (docs/design.md §6.3). */
const REDEEMABLE_DAYS = 2;
const MAX_RELAY_LENGTH = 512;
const SCHEMA_VERSION = 1;

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS tickets (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket           TEXT    NOT NULL UNIQUE,
    relay            TEXT    NOT NULL,
    key_id           TEXT    NOT NULL CHECK (length(key_id) = 16),
    day              INTEGER NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('unspent', 'spent', 'expired')),
    received_at      INTEGER NOT NULL,
    spent_at         INTEGER,
    grant_expires_at INTEGER
  ) STRICT;
  CREATE INDEX IF NOT EXISTS tickets_redeemable ON tickets (relay, state, day, received_at);
  CREATE TABLE IF NOT EXISTS grants (
    relay      TEXT    NOT NULL PRIMARY KEY,
    token      TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
  ) STRICT;
`;

interface Row {
  id: number;
  ticket: string;
  relay: string;
  key_id: string;
  day: number;
  state: TicketState;
  received_at: number;
  spent_at: number | null;
  grant_expires_at: number | null;
}

interface ListParams {
  state: TicketState | null;
  relay: string | null;
}

const COLUMNS = 'id, ticket, relay, key_id, day, state, received_at, spent_at, grant_expires_at';

/** `~/.powbridge/wallet.sqlite`. */
export function defaultWalletPath(home: string = homedir()): string {
  return join(home, '.powbridge', 'wallet.sqlite');
}

export class Wallet {
  private readonly insert: Database.Statement<[string, string, string, number, number]>;
  private readonly byTicket: Database.Statement<[string], Row>;
  private readonly listed: Database.Statement<[ListParams], Row>;
  private readonly next: Database.Statement<[string, number, number, string], Row>;
  private readonly settle: Database.Statement<[TicketState, number | null, number | null, number]>;
  private readonly expireBefore: Database.Statement<[number]>;
  private readonly deleteSettled: Database.Statement<[number]>;
  private readonly perState: Database.Statement<[], { state: TicketState; n: number }>;
  private readonly dropExpiredGrants: Database.Statement<[number]>;
  private readonly upsertGrant: Database.Statement<[string, string, number]>;
  private readonly grantOf: Database.Statement<
    [string, number],
    { token: string; expires_at: number }
  >;
  private readonly deleteGrant: Database.Statement<[string]>;

  private constructor(private readonly db: Database.Database) {
    this.insert = db.prepare(
      `INSERT INTO tickets (ticket, relay, key_id, day, state, received_at)
       VALUES (?, ?, ?, ?, 'unspent', ?) ON CONFLICT (ticket) DO NOTHING`,
    );
    this.byTicket = db.prepare(`SELECT ${COLUMNS} FROM tickets WHERE ticket = ?`);
    this.listed = db.prepare(
      `SELECT ${COLUMNS} FROM tickets
       WHERE (@state IS NULL OR state = @state) AND (@relay IS NULL OR relay = @relay)
       ORDER BY id`,
    );
    // Earliest day first: that ticket expires first. `skip` is a JSON array of ids the caller
    // already tried in this run (a relay that refuses one ticket must not stall the rest).
    this.next = db.prepare(
      `SELECT ${COLUMNS} FROM tickets
       WHERE relay = ? AND state = 'unspent' AND day BETWEEN ? AND ?
         AND id NOT IN (SELECT value FROM json_each(?))
       ORDER BY day, received_at, id LIMIT 1`,
    );
    // Only from unspent: a settled ticket keeps the first outcome recorded for it.
    this.settle = db.prepare(
      `UPDATE tickets SET state = ?, spent_at = ?, grant_expires_at = ?
       WHERE id = ? AND state = 'unspent'`,
    );
    this.expireBefore = db.prepare(
      `UPDATE tickets SET state = 'expired' WHERE state = 'unspent' AND day < ?`,
    );
    // A spent row ages from its spend; an expired one from the end of its last redeemable
    // day. Unspent rows are never deleted, whatever their age.
    this.deleteSettled = db.prepare(
      `DELETE FROM tickets WHERE state IN ('spent', 'expired')
       AND coalesce(spent_at, (day + ${REDEEMABLE_DAYS}) * 86400) < ?`,
    );
    this.perState = db.prepare('SELECT state, count(*) AS n FROM tickets GROUP BY state');
    this.dropExpiredGrants = db.prepare('DELETE FROM grants WHERE expires_at <= ?');
    this.upsertGrant = db.prepare(
      `INSERT INTO grants (relay, token, expires_at) VALUES (?, ?, ?)
       ON CONFLICT (relay) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at`,
    );
    this.grantOf = db.prepare(
      'SELECT token, expires_at FROM grants WHERE relay = ? AND expires_at > ?',
    );
    this.deleteGrant = db.prepare('DELETE FROM grants WHERE token = ?');
  }

  /**
   * Open (or create) a wallet. Refuses a file that group or others may access: fixing the
   * mode would hide that the tickets in it may have leaked.
   */
  static open(file: string, options: WalletOptions = {}): Wallet {
    checkDurablePath(file, 'wallet');
    if (existsSync(file)) {
      checkPrivate(file);
    } else {
      if (options.create === false) throw new Error(`no wallet at ${file}`);
      mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
      createPrivateFile(file);
    }
    return new Wallet(
      openDurableDb(file, {
        what: 'wallet',
        schema: SCHEMA,
        schemaVersion: SCHEMA_VERSION,
        busyTimeoutMs: options.busyTimeoutMs,
      }),
    );
  }

  /**
   * Store a ticket earned at `relay`. Durable when it returns: only then may the caller
   * acknowledge the ticket anywhere. Adding a ticket already held returns the stored row.
   */
  add(relay: string, issued: IssuedTicket, now: number): WalletTicket {
    if (typeof relay !== 'string' || relay.length === 0 || relay.length > MAX_RELAY_LENGTH) {
      throw new RangeError(`wallet: relay must be 1..${MAX_RELAY_LENGTH} characters`);
    }
    // The stored key id and day must be the ticket's own, or nextUnspent would misjudge it.
    const decoded = decodeAnyTicket(issued.ticket);
    const keyId = Buffer.from(decoded.keyId).toString('hex');
    if (keyId !== issued.keyId || decoded.day !== issued.day) {
      throw new RangeError('wallet: key id or day does not match the ticket');
    }
    // run() steps the statement to completion: the autocommit and its fsync are done here.
    this.insert.run(issued.ticket, relay, keyId, decoded.day, seconds(now));
    const row = this.byTicket.get(issued.ticket);
    if (!row) throw new Error('wallet: ticket vanished after insert');
    return fromRow(row);
  }

  /** Whether the wallet holds this ticket already, in any state (an import says so). */
  holds(ticket: string): boolean {
    return this.byTicket.get(ticket) !== undefined;
  }

  list(filter: { state?: TicketState; relay?: string } = {}): WalletTicket[] {
    if (filter.state !== undefined && !TICKET_STATES.includes(filter.state)) {
      throw new RangeError('wallet: unknown state');
    }
    return this.listed
      .all({ state: filter.state ?? null, relay: filter.relay ?? null })
      .map(fromRow);
  }

  /**
   * The unspent ticket for `relay` that expires first among those still redeemable at `now`
   * (issued today or yesterday, UTC), skipping the ids in `skip`; undefined if none.
   */
  nextUnspent(relay: string, now: number, skip: readonly number[] = []): WalletTicket | undefined {
    const today = utcDay(seconds(now));
    const row = this.next.get(relay, today - (REDEEMABLE_DAYS - 1), today, JSON.stringify(skip));
    return row ? fromRow(row) : undefined;
  }

  /** The relay took the ticket (or had already): it is worth nothing now. False if not unspent. */
  markSpent(id: number, now: number, grantExpiresAt?: number): boolean {
    const grant = grantExpiresAt === undefined ? null : seconds(grantExpiresAt);
    return this.settle.run('spent', seconds(now), grant, checkId(id)).changes === 1;
  }

  /** The relay called the ticket expired (its clock may differ from ours). False if not unspent. */
  markExpired(id: number): boolean {
    return this.settle.run('expired', null, null, checkId(id)).changes === 1;
  }

  /** Mark unspent tickets of days no relay accepts any more as expired; returns how many. */
  expire(now: number): number {
    return this.expireBefore.run(utcDay(seconds(now)) - (REDEEMABLE_DAYS - 1)).changes;
  }

  /**
   * Delete spent and expired rows settled more than `keepDays` ago; returns how many. Kept
   * grants that have expired go too.
   */
  prune(now: number, keepDays: number): number {
    if (!Number.isInteger(keepDays) || keepDays < 0) {
      throw new RangeError('wallet: keepDays must be a whole number ≥ 0');
    }
    this.dropExpiredGrants.run(seconds(now));
    return this.deleteSettled.run(seconds(now) - keepDays * 86_400).changes;
  }

  counts(): WalletCounts {
    const counts: WalletCounts = { unspent: 0, spent: 0, expired: 0 };
    for (const { state, n } of this.perState.all()) counts[state] = n;
    return counts;
  }

  /**
   * Keep a grant for the SOCKS front of `powbridge mine` at `relay` (the relay that granted
   * it) to use: `powbridge tickets redeem --for-socks`. One per relay, the latest replacing
   * the one before; expired ones are dropped on the way.
   */
  keepGrant(relay: string, grant: HandedGrant, now: number): void {
    if (typeof relay !== 'string' || relay.length === 0 || relay.length > MAX_RELAY_LENGTH) {
      throw new RangeError(`wallet: relay must be 1..${MAX_RELAY_LENGTH} characters`);
    }
    this.db.transaction(() => {
      this.dropExpiredGrants.run(seconds(now));
      this.upsertGrant.run(relay, grant.token, seconds(grant.expiresAt));
    })();
  }

  /** The grant kept for `relay`, unless it has expired at `now`. */
  grantFor(relay: string, now: number): HandedGrant | undefined {
    const row = this.grantOf.get(relay, seconds(now));
    return row ? { token: row.token, expiresAt: row.expires_at } : undefined;
  }

  /** Forget a kept grant (the relay refused its token); false if it was not kept. */
  dropGrant(token: string): boolean {
    return this.deleteGrant.run(token).changes > 0;
  }

  close(): void {
    this.db.close();
  }
}

function checkPrivate(file: string): void {
  const stats = statSync(file);
  if (!stats.isFile()) throw new Error(`wallet: ${file} is not a regular file`);
  const mode = stats.mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new Error(
      `wallet: ${file} is accessible to group or others (mode ${mode.toString(8).padStart(4, '0')}); ` +
        `its tickets may have been copied. If you are sure they were not: chmod 600 ${file}`,
    );
  }
}

function seconds(unix: number): number {
  if (!Number.isFinite(unix) || unix < 0) throw new RangeError('wallet: bad time');
  return Math.floor(unix);
}

function checkId(id: number): number {
  if (!Number.isSafeInteger(id) || id < 1) throw new RangeError('wallet: bad ticket id');
  return id;
}

function fromRow(row: Row): WalletTicket {
  return {
    id: row.id,
    ticket: row.ticket,
    relay: row.relay,
    keyId: row.key_id,
    day: row.day,
    state: row.state,
    receivedAt: row.received_at,
    spentAt: row.spent_at,
    grantExpiresAt: row.grant_expires_at,
  };
}
