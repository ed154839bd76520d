import { PostgresDatabase, type PostgresOptions, safeInteger, storageError } from './postgres.js';
import { inTransaction } from './postgres-transaction.js';
import {
  checkSlotRequest,
  type SessionSlots,
  type SlotLease,
  type SlotRequest,
} from './session-slots.js';

/**
 * Abe–Okamoto session slots of a relay family in PostgreSQL (docs/design.md §6.2): one row of
 * `ao_sessions` per open signing session, with its expiry on the relays' clock (the database's
 * clock is never read, so every instance and every test decides expiry the same way).
 *
 * Acquiring is one transaction: `pg_advisory_xact_lock` on the (key, day), then one statement
 * that deletes the slot's expired rows, counts the rest and inserts a row only if fewer than K
 * remain. The lock serialises acquirers of one (key, day) only, so two instances can never
 * both count K−1 and both insert; it is held for one statement, never across a round trip to
 * an instance, and goes with the transaction, so an instance that dies holding it blocks
 * nobody. Releasing is a plain DELETE of the row by id. A row whose instance died stays until
 * its expiry, then the next acquire of that (key, day) removes it.
 */

const ACQUIRE = `
  WITH gone AS (
    DELETE FROM ao_sessions WHERE key_id = $1::bytea AND day = $2::bigint AND expires_ms <= $3::bigint
  ),
  held AS (
    SELECT count(*) AS n FROM ao_sessions WHERE key_id = $1 AND day = $2 AND expires_ms > $3
  )
  INSERT INTO ao_sessions (key_id, day, expires_ms)
  SELECT $1::bytea, $2::bigint, $4::bigint FROM held WHERE n < $5::bigint
  RETURNING id`;

/** The advisory lock of one (key, day): a 64-bit hash, apart from the migration lock's name. */
const LOCK = `SELECT pg_advisory_xact_lock(hashtextextended('powbridge ao slot ' || $1 || ' ' || $2, 0))`;

/** Milliseconds, rounded so that a slot never ends before its lease says. */
const ms = (seconds: number) => Math.ceil(seconds * 1000);

export class PostgresSessionSlots implements SessionSlots {
  private readonly pending = new Set<Promise<unknown>>();

  constructor(
    private readonly database: PostgresDatabase,
    private readonly ownsDatabase = false,
  ) {}

  /** Slots on a database of their own (tests, tools). */
  static async open(options: PostgresOptions): Promise<PostgresSessionSlots> {
    return new PostgresSessionSlots(await PostgresDatabase.open(options), true);
  }

  async acquire(request: SlotRequest): Promise<SlotLease | null> {
    const { keyId, day, limit, now, expiresAt } = checkSlotRequest(request);
    return this.track(async () => {
      try {
        return await inTransaction(this.database.pool, async (client) => {
          await client.query(LOCK, [keyId, day]);
          const result = await client.query<{ id: string }>(ACQUIRE, [
            Buffer.from(keyId, 'hex'),
            day,
            ms(now),
            ms(expiresAt),
            limit,
          ]);
          const row = result.rows[0];
          return row ? { id: String(row.id), keyId, day, expiresAt } : null;
        });
      } catch (err) {
        throw storageError(err);
      }
    });
  }

  async release(lease: SlotLease): Promise<void> {
    await this.track(() => this.query('DELETE FROM ao_sessions WHERE id = $1', [lease.id]));
  }

  async held(keyId: string, day: number, now: number): Promise<number> {
    const [row] = await this.query<{ n: string }>(
      'SELECT count(*) AS n FROM ao_sessions WHERE key_id = $1 AND day = $2 AND expires_ms > $3',
      [Buffer.from(keyId, 'hex'), day, ms(now)],
    );
    return row ? safeInteger(row.n) : 0;
  }

  async expire(now: number): Promise<number> {
    try {
      const result = await this.database.pool.query(
        'DELETE FROM ao_sessions WHERE expires_ms <= $1',
        [ms(now)],
      );
      return result.rowCount ?? 0;
    } catch (err) {
      throw storageError(err);
    }
  }

  async close(): Promise<void> {
    // Releases issued while the relay stops still reach the database before the pool ends.
    await Promise.allSettled([...this.pending]);
    if (this.ownsDatabase) await this.database.close();
  }

  private track<T>(work: () => Promise<T>): Promise<T> {
    const promise = work();
    this.pending.add(promise);
    const forget = () => this.pending.delete(promise);
    promise.then(forget, forget);
    return promise;
  }

  private async query<R extends object>(text: string, values?: unknown[]): Promise<R[]> {
    try {
      return (await this.database.pool.query<R>(text, values)).rows;
    } catch (err) {
      throw storageError(err);
    }
  }
}
