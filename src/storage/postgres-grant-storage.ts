import { GroupCommit } from '../lib/group-commit.js';
import {
  checkGrantWrite,
  type GrantRestorer,
  type GrantStorage,
  grantIdBytes,
  restoreRows,
  type StoredGrantRun,
} from './grant-storage.js';
import { PostgresDatabase, type PostgresOptions, safeInteger, storageError } from './postgres.js';

/**
 * Paid grants of a relay family in PostgreSQL (docs/design.md §6.3): the rows of the SQLite
 * grant store (src/tickets/grant-store.ts), SHA-256 of the token only. Writes are
 * group-committed: the grants of one moment go in one statement (its own transaction), and
 * each `record` resolves after that statement's COMMIT, so a redemption is answered after its
 * grant is on disk. Rows go in sorted by key, so two instances topping up the same grants at
 * once lock them in the same order and cannot deadlock.
 */

const UPSERT = `
  INSERT INTO grant_tickets (grant_id, until, count)
  SELECT grant_id, until, count(*)::integer
  FROM unnest($1::bytea[], $2::bigint[]) AS w (grant_id, until)
  GROUP BY grant_id, until
  ORDER BY grant_id, until
  ON CONFLICT (grant_id, until) DO UPDATE SET count = grant_tickets.count + EXCLUDED.count`;

export interface PostgresGrantStorageOptions {
  /** A write that failed; the redemption is answered anyway (src/storage/grant-storage.ts). */
  onError?: (err: unknown) => void;
  /** Whether closing the grants closes the database too (a database of their own). */
  ownsDatabase?: boolean;
}

export class PostgresGrantStorage implements GrantStorage {
  private readonly onError: (err: unknown) => void;
  private readonly writes: GroupCommit<{ id: Buffer; until: number }, undefined>;

  constructor(
    private readonly database: PostgresDatabase,
    private readonly options: PostgresGrantStorageOptions = {},
  ) {
    this.onError = options.onError ?? (() => {});
    this.writes = new GroupCommit(async (batch) => {
      try {
        await this.query(UPSERT, [batch.map((w) => w.id), batch.map((w) => w.until)]);
      } catch (err) {
        this.onError(err);
      }
      return batch.map(() => undefined);
    });
  }

  /** Grants on a database of their own (tests, tools). */
  static async open(
    options: PostgresOptions & { onError?: (err: unknown) => void },
  ): Promise<PostgresGrantStorage> {
    const database = await PostgresDatabase.open(options);
    return new PostgresGrantStorage(database, {
      ...(options.onError ? { onError: options.onError } : {}),
      ownsDatabase: true,
    });
  }

  async record(id: string, until: number): Promise<void> {
    await this.writes.submit(checkGrantWrite(id, until));
  }

  async restore(book: GrantRestorer, now: number): Promise<number> {
    const at = Math.floor(now);
    await this.sweep(at);
    const rows = await this.query<{ grant_id: Buffer; until: string; count: number }>(
      'SELECT grant_id, until, count FROM grant_tickets WHERE until > $1 ORDER BY grant_id, until',
      [at],
    );
    return restoreRows(
      rows.map((row) => ({
        grantId: row.grant_id,
        until: safeInteger(row.until),
        count: row.count,
      })),
      book,
      now,
    );
  }

  async load(id: string, now: number): Promise<StoredGrantRun[]> {
    const bytes = grantIdBytes(id);
    if (bytes === null) return [];
    const rows = await this.query<{ until: string; count: number }>(
      'SELECT until, count FROM grant_tickets WHERE grant_id = $1 AND until > $2 ORDER BY until',
      [bytes, Math.floor(now)],
    );
    return rows.map((row) => ({ until: safeInteger(row.until), count: row.count }));
  }

  async sweep(now: number): Promise<number> {
    try {
      const result = await this.database.pool.query('DELETE FROM grant_tickets WHERE until <= $1', [
        Math.floor(now),
      ]);
      return result.rowCount ?? 0;
    } catch (err) {
      throw storageError(err);
    }
  }

  async count(): Promise<number> {
    const [row] = await this.query<{ count: string }>(
      'SELECT count(*) AS count FROM grant_tickets',
    );
    return row ? safeInteger(row.count) : 0;
  }

  async close(): Promise<void> {
    await this.writes.drained();
    if (this.options.ownsDatabase) await this.database.close();
  }

  private async query<R extends object>(text: string, values?: unknown[]): Promise<R[]> {
    try {
      return (await this.database.pool.query<R>(text, values)).rows;
    } catch (err) {
      throw storageError(err);
    }
  }
}
