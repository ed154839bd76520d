import type Database from 'better-sqlite3';
import { checkDurablePath, createPrivateFile, openDurableDb } from '../lib/durable-db.js';
import { runNow } from '../lib/run-now.js';
import {
  checkCursor,
  checkLedgerId,
  checkPaid,
  checkPeerName,
  checkServed,
  checkWhole,
  type Conflict,
  type PaymentRequest,
  type PeerLedger,
  type PendingSettlement,
  type ReceivedRequest,
  serialsDigest,
  type ServedTicket,
} from '../storage/peer-ledger.js';
import type { PeerBalance } from './peer-status.js';

/**
 * The peer ledger of a single relay (src/storage/peer-ledger.ts, docs/design.md §7) in SQLite,
 * on disk beside the spent store (`peers.sqlite`, WAL, synchronous=FULL, 0600). A family of
 * relays keeps it in PostgreSQL instead (src/storage/postgres-peer-ledger.ts).
 *
 * The CLI (`powbridge peers settle`) writes settlements into the same file while the relay
 * runs; SQLite's locking makes that safe, and the relay's sync loop delivers them. SQLite
 * answers at once: the methods are async only to share the interface.
 */

/** The ledger's file name in the relay's data dir. */
export const PEER_LEDGER_FILE = 'peers.sqlite';

// 2: billed_conflicts (a new table; a version 1 file is read as it is).
const SCHEMA_VERSION = 2;
const SCHEMA = `
  CREATE TABLE IF NOT EXISTS cursors (
    peer   TEXT    PRIMARY KEY,
    pulled INTEGER NOT NULL DEFAULT 0,
    acked  INTEGER NOT NULL DEFAULT 0
  ) STRICT;
  CREATE TABLE IF NOT EXISTS served (
    serial     BLOB    PRIMARY KEY CHECK (length(serial) = 32),
    peer       TEXT    NOT NULL,
    key_id     BLOB    NOT NULL,
    day        INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    offline    INTEGER NOT NULL,
    request_id TEXT
  ) STRICT;
  CREATE INDEX IF NOT EXISTS served_unbilled ON served (peer, request_id);
  CREATE TABLE IF NOT EXISTS requests_out (
    id           TEXT    PRIMARY KEY,
    peer         TEXT    NOT NULL,
    count        INTEGER NOT NULL,
    digest       TEXT    NOT NULL,
    period_from  INTEGER NOT NULL,
    period_to    INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    delivered_at INTEGER
  ) STRICT;
  CREATE TABLE IF NOT EXISTS requests_in (
    peer        TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    count       INTEGER NOT NULL,
    digest      TEXT    NOT NULL,
    period_from INTEGER NOT NULL,
    period_to   INTEGER NOT NULL,
    known       INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (peer, id)
  ) STRICT;
  CREATE TABLE IF NOT EXISTS settlements (
    peer         TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    direction    TEXT    NOT NULL CHECK (direction IN ('paid', 'received')),
    count        INTEGER NOT NULL CHECK (count > 0),
    method       TEXT    NOT NULL,
    at           INTEGER NOT NULL,
    delivered_at INTEGER,
    -- 'work' settlements we pay: the creditor's tickets (JSON array) until delivered.
    tickets      TEXT,
    PRIMARY KEY (peer, id, direction)
  ) STRICT;
  CREATE TABLE IF NOT EXISTS conflicts (
    serial      BLOB    NOT NULL,
    peer        TEXT    NOT NULL,
    key_id      BLOB    NOT NULL,
    day         INTEGER NOT NULL,
    ours_at     INTEGER NOT NULL,
    theirs_at   INTEGER NOT NULL,
    detected_at INTEGER NOT NULL,
    PRIMARY KEY (serial, peer)
  ) STRICT;
  CREATE TABLE IF NOT EXISTS billed_conflicts (
    peer       TEXT NOT NULL,
    serial     BLOB NOT NULL CHECK (length(serial) = 32),
    request_id TEXT NOT NULL,
    PRIMARY KEY (peer, serial)
  ) STRICT;
`;

/** A served ticket the peer redeemed too: it is not billed. */
const IN_CONFLICT =
  'EXISTS (SELECT 1 FROM conflicts c WHERE c.serial = served.serial AND c.peer = served.peer)';
const UNBILLED = `SELECT count(*) FROM served WHERE peer = ? AND request_id IS NULL AND NOT ${IN_CONFLICT}`;
const BILLED = 'SELECT sum(count) FROM requests_out WHERE peer = ?';
/** Conflicts found after their bill was made: in its count, but not owed. */
const BILLED_IN_CONFLICT = `SELECT count(*) FROM served WHERE peer = ? AND request_id IS NOT NULL AND ${IN_CONFLICT}`;
const BILLED_TO_US = 'SELECT sum(count) FROM requests_in WHERE peer = ?';
const NOT_OWED = 'SELECT count(*) FROM billed_conflicts WHERE peer = ?';
const SETTLED_TO_US = `SELECT sum(count) FROM settlements WHERE peer = ? AND direction = 'received'`;

interface ServedRow {
  serial: Buffer;
  key_id: Buffer;
  day: number;
  at: number;
}

/** The ledger's statements, answered at once (better-sqlite3 is synchronous). */
class LedgerFile {
  constructor(private readonly db: Database.Database) {}

  close(): void {
    this.db.close();
  }

  // --- replication cursors ---

  pulled(peer: string): number {
    return this.cursorRow(peer).pulled;
  }

  setPulled(peer: string, cursor: number): void {
    this.raiseCursor(peer, 'pulled', cursor);
  }

  /** The peer asked for our log after `cursor`: it holds everything up to there. */
  setAcked(peer: string, cursor: number): void {
    this.raiseCursor(peer, 'acked', cursor);
  }

  /** The peer's log was rebuilt (restored from a backup): read it again from the start. */
  resetPulled(peer: string): void {
    this.db.prepare('UPDATE cursors SET pulled = 0 WHERE peer = ?').run(peer);
  }

  /** Cursors only move forward: a late or repeated request cannot move one back. */
  private raiseCursor(peer: string, column: 'pulled' | 'acked', cursor: number): void {
    this.db
      .prepare(
        `INSERT INTO cursors (peer, ${column}) VALUES (?, ?)
         ON CONFLICT (peer) DO UPDATE SET ${column} = max(${column}, excluded.${column})`,
      )
      .run(peer, cursor);
  }

  private cursorRow(peer: string): { pulled: number; acked: number } {
    const row = this.db.prepare('SELECT pulled, acked FROM cursors WHERE peer = ?').get(peer) as
      { pulled: number; acked: number } | undefined;
    return row ?? { pulled: 0, acked: 0 };
  }

  // --- served tickets and payment requests (we are the creditor) ---

  /**
   * Record a peer's ticket we granted priority for; when `paymentEvery` are unbilled, bill
   * them in the same transaction (the request is then delivered by the sync loop until the
   * peer confirms it). Returns the new request, if one was made.
   */
  recordServed(
    peer: string,
    ticket: ServedTicket,
    paymentEvery: number,
    newId: () => string,
  ): PaymentRequest | null {
    return this.db.transaction(() => {
      this.db
        .prepare(
          `INSERT INTO served (serial, peer, key_id, day, seq, at, offline)
           VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (serial) DO NOTHING`,
        )
        .run(
          Buffer.from(ticket.serial),
          peer,
          Buffer.from(ticket.keyId),
          ticket.day,
          ticket.seq,
          ticket.at,
          ticket.offline ? 1 : 0,
        );
      // Count first: the rows are read only on the redemption that completes a bill.
      if (this.count(UNBILLED, peer) < paymentEvery) return null;
      const unbilled = this.db
        .prepare(
          `SELECT serial, key_id, day, at FROM served
           WHERE peer = ? AND request_id IS NULL AND NOT ${IN_CONFLICT} ORDER BY at, serial`,
        )
        .all(peer) as ServedRow[];
      const id = newId();
      const request: PaymentRequest = {
        id,
        count: unbilled.length,
        digest: serialsDigest(unbilled.map((r) => r.serial)),
        period: {
          from: Math.min(...unbilled.map((r) => r.at)),
          to: Math.max(...unbilled.map((r) => r.at)),
        },
        serials: unbilled.map((r) => ({
          serial: new Uint8Array(r.serial),
          keyId: new Uint8Array(r.key_id),
          day: r.day,
        })),
      };
      this.db
        .prepare(
          `INSERT INTO requests_out (id, peer, count, digest, period_from, period_to, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          id,
          peer,
          request.count,
          request.digest,
          request.period.from,
          request.period.to,
          ticket.at,
        );
      this.db
        .prepare(
          `UPDATE served SET request_id = ? WHERE peer = ? AND request_id IS NULL AND NOT ${IN_CONFLICT}`,
        )
        .run(id, peer);
      return request;
    })();
  }

  /** Requests the peer has not confirmed yet, oldest first, with their serials. */
  undeliveredRequests(peer: string): PaymentRequest[] {
    const rows = this.db
      .prepare(
        `SELECT id, count, digest, period_from, period_to FROM requests_out
         WHERE peer = ? AND delivered_at IS NULL ORDER BY created_at, id`,
      )
      .all(peer) as {
      id: string;
      count: number;
      digest: string;
      period_from: number;
      period_to: number;
    }[];
    const serialsOf = this.db.prepare(
      'SELECT serial, key_id, day, at FROM served WHERE request_id = ? ORDER BY at, serial',
    );
    return rows.map((row) => ({
      id: row.id,
      count: row.count,
      digest: row.digest,
      period: { from: row.period_from, to: row.period_to },
      serials: (serialsOf.all(row.id) as ServedRow[]).map((r) => ({
        serial: new Uint8Array(r.serial),
        keyId: new Uint8Array(r.key_id),
        day: r.day,
      })),
    }));
  }

  markRequestDelivered(id: string, at: number): void {
    this.db.prepare('UPDATE requests_out SET delivered_at = ? WHERE id = ?').run(at, id);
  }

  // --- payment requests received (we are the debtor) ---

  /**
   * Idempotent by (peer, id); returns false if this id was already recorded. Those of its
   * `serials` that are conflicts with the peer (recorded before this call: the bill's serials
   * were applied as a sync first) are noted as not owed.
   */
  recordRequestIn(
    peer: string,
    request: Omit<PaymentRequest, 'serials'>,
    known: number,
    at: number,
    serials: readonly Uint8Array[] = [],
  ): boolean {
    return this.db.transaction(() => {
      const result = this.db
        .prepare(
          `INSERT INTO requests_in (peer, id, count, digest, period_from, period_to, known, received_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (peer, id) DO NOTHING`,
        )
        .run(
          peer,
          request.id,
          request.count,
          request.digest,
          request.period.from,
          request.period.to,
          known,
          at,
        );
      const notOwed = this.db.prepare(
        `INSERT OR IGNORE INTO billed_conflicts (peer, serial, request_id)
         SELECT peer, serial, ? FROM conflicts WHERE peer = ? AND serial = ?`,
      );
      for (const serial of serials) notOwed.run(request.id, peer, Buffer.from(serial));
      return result.changes === 1;
    })();
  }

  listRequestsIn(peer: string): ReceivedRequest[] {
    const rows = this.db
      .prepare(
        `SELECT id, count, digest, period_from, period_to, received_at FROM requests_in
         WHERE peer = ? ORDER BY received_at, id`,
      )
      .all(peer) as {
      id: string;
      count: number;
      digest: string;
      period_from: number;
      period_to: number;
      received_at: number;
    }[];
    return rows.map((r) => ({
      id: r.id,
      count: r.count,
      digest: r.digest,
      period: { from: r.period_from, to: r.period_to },
      receivedAt: r.received_at,
    }));
  }

  // --- settlements ---

  /** The debtor's operator records a payment (delivered to the peer by the sync loop). */
  recordPaid(
    peer: string,
    id: string,
    count: number,
    method: 'operator' | 'work',
    at: number,
    tickets?: readonly string[],
  ): void {
    // Check and record under one write lock (IMMEDIATE): two settles at the same moment, from
    // the CLI and another CLI, cannot together record more than we owe.
    this.db
      .transaction(() => {
        const { weOwe } = this.balance(peer);
        if (count > weOwe) {
          throw new RangeError(`we owe ${peer} ${weOwe} tickets; refusing to settle ${count}`);
        }
        this.db
          .prepare(
            `INSERT INTO settlements (peer, id, direction, count, method, at, tickets)
             VALUES (?, ?, 'paid', ?, ?, ?, ?)`,
          )
          .run(peer, id, count, method, at, tickets ? JSON.stringify(tickets) : null);
      })
      .immediate();
  }

  /** The count of a settlement the peer already told us about, if any (retries are normal). */
  receivedSettlement(peer: string, id: string): number | undefined {
    const count = this.db
      .prepare(`SELECT count FROM settlements WHERE peer = ? AND id = ? AND direction = 'received'`)
      .pluck()
      .get(peer, id) as number | undefined;
    return count;
  }

  /** A peer told us it settled; idempotent by (peer, id). */
  recordReceived(peer: string, id: string, count: number, method: string, at: number): boolean {
    const result = this.db
      .prepare(
        `INSERT INTO settlements (peer, id, direction, count, method, at, delivered_at)
         VALUES (?, ?, 'received', ?, ?, ?, ?) ON CONFLICT (peer, id, direction) DO NOTHING`,
      )
      .run(peer, id, count, method, at, at);
    return result.changes === 1;
  }

  undeliveredSettlements(peer: string): PendingSettlement[] {
    const rows = this.db
      .prepare(
        `SELECT id, count, method, at, tickets FROM settlements
         WHERE peer = ? AND direction = 'paid' AND delivered_at IS NULL ORDER BY at, id`,
      )
      .all(peer) as {
      id: string;
      count: number;
      method: 'operator' | 'work';
      at: number;
      tickets: string | null;
    }[];
    return rows.map((r) => ({
      id: r.id,
      count: r.count,
      method: r.method,
      at: r.at,
      ...(r.tickets ? { tickets: JSON.parse(r.tickets) as string[] } : {}),
    }));
  }

  /**
   * The creditor confirmed a settlement. For 'work' it may have taken fewer tickets than
   * sent (some did not verify): count only what it took, and drop the ticket strings, which
   * are spent or worthless now.
   */
  settlementDelivered(peer: string, id: string, accepted: number, at: number): void {
    this.db.transaction(() => {
      if (accepted === 0) {
        this.db
          .prepare(`DELETE FROM settlements WHERE peer = ? AND id = ? AND direction = 'paid'`)
          .run(peer, id);
        return;
      }
      this.db
        .prepare(
          `UPDATE settlements SET delivered_at = ?, tickets = NULL, count = min(count, ?)
           WHERE peer = ? AND id = ? AND direction = 'paid'`,
        )
        .run(at, accepted, peer, id);
    })();
  }

  // --- conflicts ---

  /** Returns true the first time this (serial, peer) conflict is seen. */
  recordConflict(peer: string, conflict: Conflict, at: number): boolean {
    const result = this.db
      .prepare(
        `INSERT INTO conflicts (serial, peer, key_id, day, ours_at, theirs_at, detected_at)
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (serial, peer) DO NOTHING`,
      )
      .run(
        Buffer.from(conflict.serial),
        peer,
        Buffer.from(conflict.keyId),
        conflict.day,
        conflict.oursAt,
        conflict.theirsAt,
        at,
      );
    return result.changes === 1;
  }

  conflicts(peer: string): (Conflict & { detectedAt: number })[] {
    const rows = this.db
      .prepare(
        `SELECT serial, key_id, day, ours_at, theirs_at, detected_at FROM conflicts
         WHERE peer = ? ORDER BY detected_at`,
      )
      .all(peer) as {
      serial: Buffer;
      key_id: Buffer;
      day: number;
      ours_at: number;
      theirs_at: number;
      detected_at: number;
    }[];
    return rows.map((r) => ({
      serial: new Uint8Array(r.serial),
      keyId: new Uint8Array(r.key_id),
      day: r.day,
      oursAt: r.ours_at,
      theirsAt: r.theirs_at,
      detectedAt: r.detected_at,
    }));
  }

  // --- balances ---

  /**
   * Billed tickets the peer has not settled: what `maxUnpaid` limits. Its own method because
   * every redemption of the peer's tickets asks, and needs none of the rest of `balance`.
   */
  unpaidToUs(peer: string): number {
    return Math.max(0, this.billed(peer) - this.count(SETTLED_TO_US, peer));
  }

  /** What we billed the peer, less the conflicts found after the bill was made. */
  private billed(peer: string): number {
    return this.count(BILLED, peer) - this.count(BILLED_IN_CONFLICT, peer);
  }

  private count(sql: string, ...args: unknown[]): number {
    return (
      (this.db
        .prepare(sql)
        .pluck()
        .get(...args) as number | null) ?? 0
    );
  }

  balance(peer: string): PeerBalance {
    const { pulled, acked } = this.cursorRow(peer);
    const served = this.count('SELECT count(*) FROM served WHERE peer = ?', peer);
    const unbilled = this.count(UNBILLED, peer);
    const billed = this.billed(peer);
    const settledToUs = this.count(SETTLED_TO_US, peer);
    const conflictsNotOwed = this.count(NOT_OWED, peer);
    const billedToUs = Math.max(0, this.count(BILLED_TO_US, peer) - conflictsNotOwed);
    const settledByUs = this.count(
      `SELECT sum(count) FROM settlements WHERE peer = ? AND direction = 'paid'`,
      peer,
    );
    return {
      served,
      unbilled,
      billed,
      settledToUs,
      unpaidToUs: Math.max(0, billed - settledToUs),
      billedToUs,
      settledByUs,
      weOwe: Math.max(0, billedToUs - settledByUs),
      owedSync: this.count(
        'SELECT count(*) FROM served WHERE peer = ? AND offline = 1 AND seq > ?',
        peer,
        acked,
      ),
      pendingRequests: this.count(
        'SELECT count(*) FROM requests_out WHERE peer = ? AND delivered_at IS NULL',
        peer,
      ),
      pendingSettlements: this.count(
        `SELECT count(*) FROM settlements WHERE peer = ? AND direction = 'paid' AND delivered_at IS NULL`,
        peer,
      ),
      conflicts: this.count('SELECT count(*) FROM conflicts WHERE peer = ?', peer),
      conflictsNotBilled: this.count(
        `SELECT count(*) FROM served WHERE peer = ? AND ${IN_CONFLICT}`,
        peer,
      ),
      conflictsNotOwed,
      pulled,
      acked,
    };
  }
}

export class SqlitePeerLedger implements PeerLedger {
  private constructor(private readonly file: LedgerFile) {}

  static open(file: string): SqlitePeerLedger {
    checkDurablePath(file, 'peer ledger');
    createPrivateFile(file);
    return new SqlitePeerLedger(
      new LedgerFile(
        openDurableDb(file, { what: 'peer ledger', schema: SCHEMA, schemaVersion: SCHEMA_VERSION }),
      ),
    );
  }

  close(): Promise<void> {
    return runNow(() => this.file.close());
  }

  pulled(peer: string): Promise<number> {
    return runNow(() => this.file.pulled(peer));
  }

  setPulled(peer: string, cursor: number): Promise<void> {
    return runNow(() => {
      checkPeerName(peer);
      checkCursor(cursor);
      this.file.setPulled(peer, cursor);
    });
  }

  setAcked(peer: string, cursor: number): Promise<void> {
    return runNow(() => {
      checkPeerName(peer);
      checkCursor(cursor);
      this.file.setAcked(peer, cursor);
    });
  }

  resetPulled(peer: string): Promise<void> {
    return runNow(() => this.file.resetPulled(peer));
  }

  recordServed(
    peer: string,
    ticket: ServedTicket,
    paymentEvery: number,
    newId: () => string,
  ): Promise<PaymentRequest | null> {
    return runNow(() => {
      checkServed(peer, ticket, paymentEvery);
      return this.file.recordServed(peer, ticket, paymentEvery, newId);
    });
  }

  undeliveredRequests(peer: string): Promise<PaymentRequest[]> {
    return runNow(() => this.file.undeliveredRequests(peer));
  }

  markRequestDelivered(id: string, at: number): Promise<void> {
    return runNow(() => {
      checkWhole(at, 'at');
      this.file.markRequestDelivered(id, at);
    });
  }

  recordRequestIn(
    peer: string,
    request: Omit<PaymentRequest, 'serials'>,
    known: number,
    at: number,
    serials: readonly Uint8Array[] = [],
  ): Promise<boolean> {
    return runNow(() => {
      checkPeerName(peer);
      checkLedgerId(request.id);
      checkWhole(known, 'known');
      checkWhole(at, 'at');
      return this.file.recordRequestIn(peer, request, known, at, serials);
    });
  }

  listRequestsIn(peer: string): Promise<ReceivedRequest[]> {
    return runNow(() => this.file.listRequestsIn(peer));
  }

  recordPaid(
    peer: string,
    id: string,
    count: number,
    method: 'operator' | 'work',
    at: number,
    tickets?: readonly string[],
  ): Promise<void> {
    return runNow(() => {
      checkPeerName(peer);
      checkPaid(id, count, method, tickets);
      checkWhole(at, 'at');
      this.file.recordPaid(peer, id, count, method, at, tickets);
    });
  }

  receivedSettlement(peer: string, id: string): Promise<number | undefined> {
    return runNow(() => this.file.receivedSettlement(peer, id));
  }

  recordReceived(
    peer: string,
    id: string,
    count: number,
    method: string,
    at: number,
  ): Promise<boolean> {
    return runNow(() => {
      checkPeerName(peer);
      checkLedgerId(id);
      checkWhole(count, 'count');
      checkWhole(at, 'at');
      return this.file.recordReceived(peer, id, count, method, at);
    });
  }

  undeliveredSettlements(peer: string): Promise<PendingSettlement[]> {
    return runNow(() => this.file.undeliveredSettlements(peer));
  }

  settlementDelivered(peer: string, id: string, accepted: number, at: number): Promise<void> {
    return runNow(() => {
      checkWhole(accepted, 'accepted');
      checkWhole(at, 'at');
      this.file.settlementDelivered(peer, id, accepted, at);
    });
  }

  recordConflict(peer: string, conflict: Conflict, at: number): Promise<boolean> {
    return runNow(() => {
      checkPeerName(peer);
      checkWhole(at, 'at');
      return this.file.recordConflict(peer, conflict, at);
    });
  }

  conflicts(peer: string): Promise<(Conflict & { detectedAt: number })[]> {
    return runNow(() => this.file.conflicts(peer));
  }

  unpaidToUs(peer: string): Promise<number> {
    return runNow(() => this.file.unpaidToUs(peer));
  }

  balance(peer: string): Promise<PeerBalance> {
    return runNow(() => this.file.balance(peer));
  }
}
