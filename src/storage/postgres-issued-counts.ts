import {
  checkIssuedCount,
  type IssuedCount,
  type IssuedCountStorage,
  type IssuingScheme,
} from './issued-counter.js';
import { PostgresDatabase, type PostgresOptions, safeInteger, storageError } from './postgres.js';

/**
 * Issued-ticket counts of a relay family in PostgreSQL (src/storage/issued-counter.ts): the
 * `issued_tickets` rows, one per (day, key, scheme), that every instance adds to. A batch is
 * one upsert statement, its rows sorted by key so two instances adding at once lock them in the
 * same order.
 */

const ADD = `
  INSERT INTO issued_tickets (day, key_id, scheme, count)
  SELECT day, key_id, scheme, sum(count)
  FROM unnest($1::bigint[], $2::bytea[], $3::text[], $4::bigint[]) AS c (day, key_id, scheme, count)
  GROUP BY day, key_id, scheme
  ORDER BY day, key_id, scheme
  ON CONFLICT (day, key_id, scheme) DO UPDATE SET count = issued_tickets.count + EXCLUDED.count`;

export class PostgresIssuedCounts implements IssuedCountStorage {
  constructor(
    private readonly database: PostgresDatabase,
    private readonly ownsDatabase = false,
  ) {}

  /** Counts on a database of their own (tests, tools). */
  static async open(options: PostgresOptions): Promise<PostgresIssuedCounts> {
    return new PostgresIssuedCounts(await PostgresDatabase.open(options), true);
  }

  async add(counts: readonly IssuedCount[]): Promise<void> {
    const rows = counts.map(checkIssuedCount).filter((c) => c.count > 0);
    if (rows.length === 0) return;
    await this.query(ADD, [
      rows.map((c) => c.day),
      rows.map((c) => Buffer.from(c.keyId, 'hex')),
      rows.map((c) => c.scheme),
      rows.map((c) => c.count),
    ]);
  }

  async day(day: number): Promise<IssuedCount[]> {
    const rows = await this.query<{ key_id: Buffer; scheme: IssuingScheme; count: string }>(
      'SELECT key_id, scheme, count FROM issued_tickets WHERE day = $1 ORDER BY key_id, scheme',
      [day],
    );
    return rows.map((r) => ({
      day,
      keyId: r.key_id.toString('hex'),
      scheme: r.scheme,
      count: safeInteger(r.count),
    }));
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
}
