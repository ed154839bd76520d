import type pg from 'pg';

/**
 * The PostgreSQL schema of a relay family, created and migrated by the relay itself: version n
 * is reached by running MIGRATIONS[0..n-1] in order, and `schema_version` records where a
 * database stands. Instances starting together take turns on an advisory lock, so each
 * migration runs once; a database migrated by a newer powbridge is refused, not guessed at.
 *
 * Version 1: the spent log (`spent`, with `spent_head`, the counter that orders it: see
 * postgres-spent-log.ts) and the grants (`grant_tickets`), the same rows as the SQLite files
 * (src/tickets/spent-store.ts, src/tickets/grant-store.ts).
 */

const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE spent (
    seq      bigint PRIMARY KEY CHECK (seq > 0),
    serial   bytea  NOT NULL UNIQUE CHECK (length(serial) = 32),
    key_id   bytea  NOT NULL CHECK (length(key_id) = 8),
    day      bigint NOT NULL CHECK (day >= 0),
    spent_at bigint NOT NULL CHECK (spent_at >= 0),
    origin   text   NOT NULL CHECK (length(origin) BETWEEN 1 AND 64)
  );
  CREATE INDEX spent_day ON spent (day);
  CREATE TABLE spent_head (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    seq bigint  NOT NULL CHECK (seq >= 0)
  );
  INSERT INTO spent_head (seq) VALUES (0);
  CREATE TABLE grant_tickets (
    grant_id bytea   NOT NULL CHECK (length(grant_id) = 32),
    until    bigint  NOT NULL,
    count    integer NOT NULL CHECK (count > 0),
    PRIMARY KEY (grant_id, until)
  );
  CREATE INDEX grant_tickets_until ON grant_tickets (until);
  `,
];

/** The schema version this powbridge creates and understands. */
export const POSTGRES_SCHEMA_VERSION = MIGRATIONS.length;

/** pg_advisory_xact_lock's key for migrations: "powbrdg" in ASCII. */
const MIGRATION_LOCK = '31647755935048807';

/** Bring the database to POSTGRES_SCHEMA_VERSION; resolves the version it was at. */
export async function migrate(pool: pg.Pool): Promise<number> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    try {
      await client.query('SELECT pg_advisory_xact_lock($1::bigint)', [MIGRATION_LOCK]);
      await client.query(
        `CREATE TABLE IF NOT EXISTS schema_version (
           one     boolean PRIMARY KEY DEFAULT true CHECK (one),
           version integer NOT NULL
         )`,
      );
      const found = await client.query<{ version: number }>('SELECT version FROM schema_version');
      const from = found.rows[0]?.version ?? 0;
      if (from > POSTGRES_SCHEMA_VERSION) {
        throw new Error(
          `schema version ${from} is newer than this powbridge's (${POSTGRES_SCHEMA_VERSION}): ` +
            'upgrade powbridge on this machine too',
        );
      }
      for (const sql of MIGRATIONS.slice(from)) await client.query(sql);
      await client.query(
        `INSERT INTO schema_version (version) VALUES ($1)
         ON CONFLICT (one) DO UPDATE SET version = EXCLUDED.version`,
        [POSTGRES_SCHEMA_VERSION],
      );
      await client.query('COMMIT');
      return from;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {
        broken = true;
      });
      throw err;
    }
  } finally {
    // A connection whose ROLLBACK failed is dropped, not handed out again.
    client.release(broken);
  }
}
