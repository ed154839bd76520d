import { PostgresDatabase, type PostgresOptions, safeInteger, storageError } from './postgres.js';
import {
  asBuffer,
  checkPage,
  checkSpend,
  type SpendRequest,
  type SpendResult,
  type SpentLog,
  type SpentRecord,
} from './spent-log.js';

/**
 * The spent log of a relay family in PostgreSQL (docs/design.md §6.3, §7): the same rows as
 * the SQLite store (src/tickets/spent-store.ts), shared by every instance.
 *
 * Exactly once: a batch of spends is ONE statement, `INSERT … SELECT … WHERE NOT EXISTS …
 * ON CONFLICT (serial) DO NOTHING RETURNING seq`, in its own (implicit) transaction. The
 * UNIQUE index on `serial` decides: of two instances inserting one serial, the second waits
 * for the first to commit and then inserts nothing. The statement's answer arrives after
 * COMMIT, which with `fsync` and `synchronous_commit` on (checked by postgres.ts) means on
 * disk, so `spent: true` is durable. NOT EXISTS keeps a refused serial from touching the
 * counter below, so replays cost a read, not a write.
 *
 * Commit order: a bigserial would hand out numbers in the order statements ask, not in the
 * order they commit, and a peer reading `seq > cursor` between the commit of 6 and that of 5
 * would move its cursor past 5 for good. So numbers come from `spent_head`, a one-row counter
 * that the statement locks (SELECT … FOR UPDATE) before its first insert and moves forward
 * before it commits. Every transaction that adds rows holds that row lock until its commit is
 * visible, so the next one takes its numbers only after: `seq` order is commit order, and a
 * reader that sees row n sees every row below n that will ever exist. A statement that
 * inserts nothing never takes the lock. The lock is taken inside the statement, whose
 * snapshot is older than the wait: NOT EXISTS may then miss a serial committed meanwhile,
 * which ON CONFLICT refuses (leaving an unused number, a harmless gap), while FOR UPDATE
 * itself reads the counter's newest value. The price is that spends of the whole family
 * commit one batch at a time; group commit (src/tickets/spend-batcher.ts) makes each commit
 * carry every spend an instance gathered meanwhile. Being one statement, a batch never holds
 * the lock across a round trip to its instance: a relay that dies mid-batch blocks no other.
 */

interface Row {
  seq: string;
  serial: Buffer;
  key_id: Buffer;
  day: string;
  spent_at: string;
  origin: string;
}

const COLUMNS = 'seq, serial, key_id, day, spent_at, origin';

const SPEND = `
  WITH batch AS (
    SELECT DISTINCT ON (serial) serial, key_id, day, spent_at, origin, i
    FROM unnest($1::bytea[], $2::bytea[], $3::bigint[], $4::bigint[], $5::text[])
         WITH ORDINALITY AS r (serial, key_id, day, spent_at, origin, i)
    ORDER BY serial, i
  ),
  fresh AS (
    SELECT b.*, row_number() OVER (ORDER BY b.i) AS n
    FROM batch b
    WHERE NOT EXISTS (SELECT 1 FROM spent s WHERE s.serial = b.serial)
  ),
  head AS (
    SELECT seq FROM spent_head FOR UPDATE
  ),
  inserted AS (
    INSERT INTO spent (seq, serial, key_id, day, spent_at, origin)
    SELECT (SELECT seq FROM head) + n, serial, key_id, day, spent_at, origin
    FROM fresh
    ORDER BY n
    ON CONFLICT (serial) DO NOTHING
    RETURNING seq, serial
  ),
  moved AS (
    UPDATE spent_head SET seq = (SELECT max(seq) FROM inserted)
    WHERE EXISTS (SELECT 1 FROM inserted)
  )
  SELECT seq, serial FROM inserted`;

export class PostgresSpentLog implements SpentLog {
  /**
   * A log on `database`, which stays open after `close` unless `ownsDatabase` (then closing
   * the log closes it).
   */
  constructor(
    private readonly database: PostgresDatabase,
    private readonly ownsDatabase = false,
  ) {}

  /** A log on a database of its own (tests, tools). */
  static async open(options: PostgresOptions): Promise<PostgresSpentLog> {
    return new PostgresSpentLog(await PostgresDatabase.open(options), true);
  }

  async trySpend(request: SpendRequest): Promise<SpendResult> {
    const [result] = await this.trySpendMany([request]);
    if (!result) throw new Error('spent log: no result for a spend');
    return result;
  }

  async trySpendMany(requests: readonly SpendRequest[]): Promise<SpendResult[]> {
    const checked = requests.map(checkSpend);
    if (checked.length === 0) return [];
    const rows = await this.query<{ seq: string; serial: Buffer }>(SPEND, [
      checked.map((r) => asBuffer(r.serial)),
      checked.map((r) => asBuffer(r.keyId)),
      checked.map((r) => r.day),
      checked.map((r) => r.at),
      checked.map((r) => r.origin),
    ]);
    const won = new Map(rows.map((row) => [row.serial.toString('hex'), safeInteger(row.seq)]));
    // Each inserted serial is won by its first occurrence in the batch, as in SQLite.
    return checked.map((r) => {
      const key = asBuffer(r.serial).toString('hex');
      const seq = won.get(key);
      if (seq === undefined) return { spent: false };
      won.delete(key);
      return { spent: true, seq };
    });
  }

  async isSpent(serial: Uint8Array): Promise<boolean> {
    const rows = await this.query('SELECT 1 FROM spent WHERE serial = $1', [asBuffer(serial)]);
    return rows.length > 0;
  }

  async prune(beforeDay: number): Promise<number> {
    if (!Number.isInteger(beforeDay)) throw new RangeError('bad day');
    return this.run('DELETE FROM spent WHERE day < $1', [beforeDay]);
  }

  async since(cursor: number, limit = 1_000): Promise<SpentRecord[]> {
    checkPage(cursor, limit);
    const rows = await this.query<Row>(
      `SELECT ${COLUMNS} FROM spent WHERE seq > $1 ORDER BY seq LIMIT $2`,
      [cursor, limit],
    );
    return rows.map(toRecord);
  }

  async localSince(cursor: number, limit = 1_000): Promise<SpentRecord[]> {
    checkPage(cursor, limit);
    const rows = await this.query<Row>(
      `SELECT ${COLUMNS} FROM spent WHERE seq > $1 AND origin = 'local' ORDER BY seq LIMIT $2`,
      [cursor, limit],
    );
    return rows.map(toRecord);
  }

  /** The counter: never moves back, not even when prune deleted the newest rows. */
  async head(): Promise<number> {
    const [row] = await this.query<{ seq: string }>('SELECT seq FROM spent_head');
    return row ? safeInteger(row.seq) : 0;
  }

  async lookup(serial: Uint8Array): Promise<SpentRecord | undefined> {
    const [row] = await this.query<Row>(`SELECT ${COLUMNS} FROM spent WHERE serial = $1`, [
      asBuffer(serial),
    ]);
    return row ? toRecord(row) : undefined;
  }

  async count(): Promise<number> {
    const [row] = await this.query<{ count: string }>('SELECT count(*) AS count FROM spent');
    return row ? safeInteger(row.count) : 0;
  }

  async close(): Promise<void> {
    if (this.ownsDatabase) await this.database.close();
  }

  private async query<R extends object>(text: string, values?: unknown[]): Promise<R[]> {
    try {
      return (await this.database.pool.query<R>(text, values)).rows;
    } catch (err) {
      throw storageError(err);
    }
  }

  private async run(text: string, values: unknown[]): Promise<number> {
    try {
      return (await this.database.pool.query(text, values)).rowCount ?? 0;
    } catch (err) {
      throw storageError(err);
    }
  }
}

function toRecord(row: Row): SpentRecord {
  return {
    seq: safeInteger(row.seq),
    serial: new Uint8Array(row.serial),
    keyId: new Uint8Array(row.key_id),
    day: safeInteger(row.day),
    at: safeInteger(row.spent_at),
    origin: row.origin,
  };
}
