import type pg from 'pg';
import type { PeerBalance } from '../peers/peer-status.js';
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
} from './peer-ledger.js';
import { PostgresDatabase, type PostgresOptions, safeInteger, storageError } from './postgres.js';
import { inTransaction } from './postgres-transaction.js';
import { asBuffer } from './spent-log.js';

/**
 * The peer ledger of a relay family in PostgreSQL (src/storage/peer-ledger.ts, docs/design.md
 * §7): the tables of the SQLite `peers.sqlite` (src/peers/peer-ledger.ts) under `peer_` names,
 * one ledger for every instance, so to its peers the family keeps one account.
 *
 * The writes that read before they write (billing in `recordServed`, the owed check of
 * `recordPaid`, the not-owed conflicts of `recordRequestIn`) run in a transaction that first
 * takes a per-peer advisory lock (`pg_advisory_xact_lock`, released at COMMIT): two instances
 * serving the same peer's tickets at once, or the CLI settling while a bill arrives, take
 * turns, as SQLite's write lock makes them in one file. Nothing else needs one: cursors move
 * with `GREATEST` in one statement, and the rest are single inserts keyed by id.
 */

/** The first key of the per-peer advisory locks ("peer" in ASCII); the second is the name's hash. */
const PEER_LOCK_CLASS = 0x70656572;

/** A served ticket the peer redeemed too: it is not billed. */
const IN_CONFLICT =
  'EXISTS (SELECT 1 FROM peer_conflicts c WHERE c.serial = s.serial AND c.peer = s.peer)';
const UNBILLED = `(SELECT count(*) FROM peer_served s WHERE s.peer = $1 AND s.request_id IS NULL AND NOT ${IN_CONFLICT})`;
/** What we billed the peer, less the conflicts found after the bill was made. */
const BILLED = `((SELECT coalesce(sum(count), 0) FROM peer_requests_out WHERE peer = $1)
  - (SELECT count(*) FROM peer_served s WHERE s.peer = $1 AND s.request_id IS NOT NULL AND ${IN_CONFLICT}))`;
const SETTLED_TO_US = `(SELECT coalesce(sum(count), 0) FROM peer_settlements WHERE peer = $1 AND direction = 'received')`;
const NOT_OWED = '(SELECT count(*) FROM peer_billed_conflicts WHERE peer = $1)';

/** Every number `balance` needs, in one statement (one snapshot). */
const BALANCE = `
  SELECT
    coalesce((SELECT pulled FROM peer_cursors WHERE peer = $1), 0) AS pulled,
    coalesce((SELECT acked FROM peer_cursors WHERE peer = $1), 0) AS acked,
    (SELECT count(*) FROM peer_served WHERE peer = $1) AS served,
    ${UNBILLED} AS unbilled,
    ${BILLED} AS billed,
    ${SETTLED_TO_US} AS settled_to_us,
    ${NOT_OWED} AS not_owed,
    (SELECT coalesce(sum(count), 0) FROM peer_requests_in WHERE peer = $1) AS billed_to_us_all,
    (SELECT coalesce(sum(count), 0) FROM peer_settlements
       WHERE peer = $1 AND direction = 'paid') AS settled_by_us,
    (SELECT count(*) FROM peer_served WHERE peer = $1 AND offline AND seq >
       coalesce((SELECT acked FROM peer_cursors WHERE peer = $1), 0)) AS owed_sync,
    (SELECT count(*) FROM peer_requests_out
       WHERE peer = $1 AND delivered_at IS NULL) AS pending_requests,
    (SELECT count(*) FROM peer_settlements
       WHERE peer = $1 AND direction = 'paid' AND delivered_at IS NULL) AS pending_settlements,
    (SELECT count(*) FROM peer_conflicts WHERE peer = $1) AS conflicts,
    (SELECT count(*) FROM peer_served s WHERE s.peer = $1 AND ${IN_CONFLICT}) AS conflicts_not_billed`;

type BalanceRow = Record<
  | 'pulled'
  | 'acked'
  | 'served'
  | 'unbilled'
  | 'billed'
  | 'settled_to_us'
  | 'not_owed'
  | 'billed_to_us_all'
  | 'settled_by_us'
  | 'owed_sync'
  | 'pending_requests'
  | 'pending_settlements'
  | 'conflicts'
  | 'conflicts_not_billed',
  string | number
>;

interface ServedRow {
  serial: Buffer;
  key_id: Buffer;
  day: string;
  at: string;
}

interface RequestRow {
  id: string;
  count: number;
  digest: string;
  period_from: string;
  period_to: string;
}

/** A query runner: the pool, or one client inside a transaction. */
type Queryable = Pick<pg.PoolClient, 'query'>;

export class PostgresPeerLedger implements PeerLedger {
  /**
   * A ledger on `database`, which stays open after `close` unless `ownsDatabase` (then closing
   * the ledger closes it).
   */
  constructor(
    private readonly database: PostgresDatabase,
    private readonly ownsDatabase = false,
  ) {}

  /** A ledger on a database of its own (tests, the CLI). */
  static async open(options: PostgresOptions): Promise<PostgresPeerLedger> {
    return new PostgresPeerLedger(await PostgresDatabase.open(options), true);
  }

  async close(): Promise<void> {
    if (this.ownsDatabase) await this.database.close();
  }

  // --- replication cursors ---

  async pulled(peer: string): Promise<number> {
    const [row] = await this.query<{ pulled: string }>(
      'SELECT pulled FROM peer_cursors WHERE peer = $1',
      [peer],
    );
    return row ? safeInteger(row.pulled) : 0;
  }

  async setPulled(peer: string, cursor: number): Promise<void> {
    await this.raiseCursor(peer, 'pulled', cursor);
  }

  async setAcked(peer: string, cursor: number): Promise<void> {
    await this.raiseCursor(peer, 'acked', cursor);
  }

  async resetPulled(peer: string): Promise<void> {
    await this.query('UPDATE peer_cursors SET pulled = 0 WHERE peer = $1', [peer]);
  }

  /** Cursors only move forward: a late or repeated request cannot move one back. */
  private async raiseCursor(peer: string, column: 'pulled' | 'acked', cursor: number) {
    checkPeerName(peer);
    checkCursor(cursor);
    await this.query(
      `INSERT INTO peer_cursors (peer, ${column}) VALUES ($1, $2)
       ON CONFLICT (peer) DO UPDATE
       SET ${column} = GREATEST(peer_cursors.${column}, EXCLUDED.${column})`,
      [peer, cursor],
    );
  }

  // --- served tickets and payment requests (we are the creditor) ---

  async recordServed(
    peer: string,
    ticket: ServedTicket,
    paymentEvery: number,
    newId: () => string,
  ): Promise<PaymentRequest | null> {
    checkServed(peer, ticket, paymentEvery);
    return this.transaction(peer, async (db) => {
      await db.query(
        `INSERT INTO peer_served (serial, peer, key_id, day, seq, at, offline)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (serial) DO NOTHING`,
        [
          asBuffer(ticket.serial),
          peer,
          asBuffer(ticket.keyId),
          ticket.day,
          ticket.seq,
          ticket.at,
          ticket.offline,
        ],
      );
      // Count first: the rows are read only on the redemption that completes a bill.
      if ((await countOf(db, `SELECT ${UNBILLED} AS n`, [peer])) < paymentEvery) return null;
      const unbilled = (
        await db.query<ServedRow>(
          `SELECT serial, key_id, day, at FROM peer_served s
           WHERE s.peer = $1 AND s.request_id IS NULL AND NOT ${IN_CONFLICT}
           ORDER BY at, serial`,
          [peer],
        )
      ).rows;
      const ats = unbilled.map((r) => safeInteger(r.at));
      const id = newId();
      checkLedgerId(id);
      const request: PaymentRequest = {
        id,
        count: unbilled.length,
        digest: serialsDigest(unbilled.map((r) => r.serial)),
        period: { from: Math.min(...ats), to: Math.max(...ats) },
        serials: unbilled.map(servedSerial),
      };
      await db.query(
        `INSERT INTO peer_requests_out (id, peer, count, digest, period_from, period_to, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)`,
        [
          id,
          peer,
          request.count,
          request.digest,
          request.period.from,
          request.period.to,
          ticket.at,
        ],
      );
      await db.query(
        `UPDATE peer_served s SET request_id = $2
         WHERE s.peer = $1 AND s.request_id IS NULL AND NOT ${IN_CONFLICT}`,
        [peer, id],
      );
      return request;
    });
  }

  async undeliveredRequests(peer: string): Promise<PaymentRequest[]> {
    const rows = await this.query<RequestRow>(
      `SELECT id, count, digest, period_from, period_to FROM peer_requests_out
       WHERE peer = $1 AND delivered_at IS NULL ORDER BY created_at, id`,
      [peer],
    );
    const requests: PaymentRequest[] = [];
    for (const row of rows) {
      const serials = await this.query<ServedRow>(
        'SELECT serial, key_id, day, at FROM peer_served WHERE request_id = $1 ORDER BY at, serial',
        [row.id],
      );
      requests.push({
        id: row.id,
        count: row.count,
        digest: row.digest,
        period: { from: safeInteger(row.period_from), to: safeInteger(row.period_to) },
        serials: serials.map(servedSerial),
      });
    }
    return requests;
  }

  async markRequestDelivered(id: string, at: number): Promise<void> {
    checkWhole(at, 'at');
    await this.query('UPDATE peer_requests_out SET delivered_at = $1 WHERE id = $2', [at, id]);
  }

  // --- payment requests received (we are the debtor) ---

  async recordRequestIn(
    peer: string,
    request: Omit<PaymentRequest, 'serials'>,
    known: number,
    at: number,
    serials: readonly Uint8Array[] = [],
  ): Promise<boolean> {
    checkPeerName(peer);
    checkLedgerId(request.id);
    checkWhole(known, 'known');
    checkWhole(at, 'at');
    return this.transaction(peer, async (db) => {
      const result = await db.query(
        `INSERT INTO peer_requests_in
           (peer, id, count, digest, period_from, period_to, known, received_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (peer, id) DO NOTHING`,
        [
          peer,
          request.id,
          request.count,
          request.digest,
          request.period.from,
          request.period.to,
          known,
          at,
        ],
      );
      if (serials.length > 0) {
        await db.query(
          `INSERT INTO peer_billed_conflicts (peer, serial, request_id)
           SELECT peer, serial, $2 FROM peer_conflicts
           WHERE peer = $1 AND serial = ANY($3::bytea[])
           ON CONFLICT (peer, serial) DO NOTHING`,
          [peer, request.id, serials.map(asBuffer)],
        );
      }
      return result.rowCount === 1;
    });
  }

  async listRequestsIn(peer: string): Promise<ReceivedRequest[]> {
    const rows = await this.query<RequestRow & { received_at: string }>(
      `SELECT id, count, digest, period_from, period_to, received_at FROM peer_requests_in
       WHERE peer = $1 ORDER BY received_at, id`,
      [peer],
    );
    return rows.map((r) => ({
      id: r.id,
      count: r.count,
      digest: r.digest,
      period: { from: safeInteger(r.period_from), to: safeInteger(r.period_to) },
      receivedAt: safeInteger(r.received_at),
    }));
  }

  // --- settlements ---

  async recordPaid(
    peer: string,
    id: string,
    count: number,
    method: 'operator' | 'work',
    at: number,
    tickets?: readonly string[],
  ): Promise<void> {
    checkPeerName(peer);
    checkPaid(id, count, method, tickets);
    checkWhole(at, 'at');
    // Check and record under the peer's lock: two settles at the same moment, from two CLIs
    // or two machines, cannot together record more than we owe.
    await this.transaction(peer, async (db) => {
      const { weOwe } = await balanceOf(db, peer);
      if (count > weOwe) {
        throw new RangeError(`we owe ${peer} ${weOwe} tickets; refusing to settle ${count}`);
      }
      await db.query(
        `INSERT INTO peer_settlements (peer, id, direction, count, method, at, tickets)
         VALUES ($1, $2, 'paid', $3, $4, $5, $6)`,
        [peer, id, count, method, at, tickets ? JSON.stringify(tickets) : null],
      );
    });
  }

  async receivedSettlement(peer: string, id: string): Promise<number | undefined> {
    const [row] = await this.query<{ count: number }>(
      `SELECT count FROM peer_settlements WHERE peer = $1 AND id = $2 AND direction = 'received'`,
      [peer, id],
    );
    return row?.count;
  }

  async recordReceived(
    peer: string,
    id: string,
    count: number,
    method: string,
    at: number,
  ): Promise<boolean> {
    checkPeerName(peer);
    checkLedgerId(id);
    checkWhole(count, 'count');
    checkWhole(at, 'at');
    return (
      (await this.run(
        `INSERT INTO peer_settlements (peer, id, direction, count, method, at, delivered_at)
         VALUES ($1, $2, 'received', $3, $4, $5, $5)
         ON CONFLICT (peer, id, direction) DO NOTHING`,
        [peer, id, count, method, at],
      )) === 1
    );
  }

  async undeliveredSettlements(peer: string): Promise<PendingSettlement[]> {
    const rows = await this.query<{
      id: string;
      count: number;
      method: 'operator' | 'work';
      at: string;
      tickets: string | null;
    }>(
      `SELECT id, count, method, at, tickets FROM peer_settlements
       WHERE peer = $1 AND direction = 'paid' AND delivered_at IS NULL ORDER BY at, id`,
      [peer],
    );
    return rows.map((r) => ({
      id: r.id,
      count: r.count,
      method: r.method,
      at: safeInteger(r.at),
      ...(r.tickets ? { tickets: JSON.parse(r.tickets) as string[] } : {}),
    }));
  }

  async settlementDelivered(peer: string, id: string, accepted: number, at: number) {
    checkWhole(accepted, 'accepted');
    checkWhole(at, 'at');
    if (accepted === 0) {
      await this.query(
        `DELETE FROM peer_settlements WHERE peer = $1 AND id = $2 AND direction = 'paid'`,
        [peer, id],
      );
      return;
    }
    await this.query(
      `UPDATE peer_settlements SET delivered_at = $1, tickets = NULL, count = LEAST(count, $2)
       WHERE peer = $3 AND id = $4 AND direction = 'paid'`,
      [at, accepted, peer, id],
    );
  }

  // --- conflicts ---

  async recordConflict(peer: string, conflict: Conflict, at: number): Promise<boolean> {
    checkPeerName(peer);
    checkWhole(at, 'at');
    return (
      (await this.run(
        `INSERT INTO peer_conflicts (serial, peer, key_id, day, ours_at, theirs_at, detected_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (serial, peer) DO NOTHING`,
        [
          asBuffer(conflict.serial),
          peer,
          asBuffer(conflict.keyId),
          conflict.day,
          conflict.oursAt,
          conflict.theirsAt,
          at,
        ],
      )) === 1
    );
  }

  async conflicts(peer: string): Promise<(Conflict & { detectedAt: number })[]> {
    const rows = await this.query<{
      serial: Buffer;
      key_id: Buffer;
      day: string;
      ours_at: string;
      theirs_at: string;
      detected_at: string;
    }>(
      `SELECT serial, key_id, day, ours_at, theirs_at, detected_at FROM peer_conflicts
       WHERE peer = $1 ORDER BY detected_at, serial`,
      [peer],
    );
    return rows.map((r) => ({
      serial: new Uint8Array(r.serial),
      keyId: new Uint8Array(r.key_id),
      day: safeInteger(r.day),
      oursAt: safeInteger(r.ours_at),
      theirsAt: safeInteger(r.theirs_at),
      detectedAt: safeInteger(r.detected_at),
    }));
  }

  // --- balances ---

  async unpaidToUs(peer: string): Promise<number> {
    const n = await this.guard(() =>
      countOf(this.database.pool, `SELECT ${BILLED} - ${SETTLED_TO_US} AS n`, [peer]),
    );
    return Math.max(0, n);
  }

  balance(peer: string): Promise<PeerBalance> {
    return this.guard(() => balanceOf(this.database.pool, peer));
  }

  /** `work` in one transaction, after the per-peer lock. */
  private async transaction<T>(peer: string, work: (db: Queryable) => Promise<T>): Promise<T> {
    try {
      return await inTransaction(this.database.pool, async (client) => {
        await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [
          PEER_LOCK_CLASS,
          peer,
        ]);
        return work(client);
      });
    } catch (err) {
      throw storageError(err);
    }
  }

  private async guard<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      throw storageError(err);
    }
  }

  private query<R extends object>(text: string, values: unknown[]): Promise<R[]> {
    return this.guard(async () => (await this.database.pool.query<R>(text, values)).rows);
  }

  private run(text: string, values: unknown[]): Promise<number> {
    return this.guard(async () => (await this.database.pool.query(text, values)).rowCount ?? 0);
  }
}

async function countOf(db: Queryable, text: string, values: unknown[]): Promise<number> {
  const result = await db.query<{ n: string | number | null }>(text, values);
  const n = result.rows[0]?.n;
  return n === null || n === undefined ? 0 : safeInteger(n);
}

async function balanceOf(db: Queryable, peer: string): Promise<PeerBalance> {
  const result = await db.query<BalanceRow>(BALANCE, [peer]);
  const row = result.rows[0];
  if (!row) throw new Error('peer ledger: no answer to the balance query');
  const n = (column: keyof BalanceRow) => safeInteger(row[column]);
  const billed = n('billed');
  const settledToUs = n('settled_to_us');
  const conflictsNotOwed = n('not_owed');
  const billedToUs = Math.max(0, n('billed_to_us_all') - conflictsNotOwed);
  const settledByUs = n('settled_by_us');
  return {
    served: n('served'),
    unbilled: n('unbilled'),
    billed,
    settledToUs,
    unpaidToUs: Math.max(0, billed - settledToUs),
    billedToUs,
    settledByUs,
    weOwe: Math.max(0, billedToUs - settledByUs),
    owedSync: n('owed_sync'),
    pendingRequests: n('pending_requests'),
    pendingSettlements: n('pending_settlements'),
    conflicts: n('conflicts'),
    conflictsNotBilled: n('conflicts_not_billed'),
    conflictsNotOwed,
    pulled: n('pulled'),
    acked: n('acked'),
  };
}

function servedSerial(row: ServedRow): PaymentRequest['serials'][number] {
  return {
    serial: new Uint8Array(row.serial),
    keyId: new Uint8Array(row.key_id),
    day: safeInteger(row.day),
  };
}
