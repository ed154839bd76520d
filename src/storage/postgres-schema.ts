import type pg from 'pg';
import { inTransaction } from './postgres-transaction.js';

/**
 * The PostgreSQL schema of a relay family, created and migrated by the relay itself: version n
 * is reached by running MIGRATIONS[0..n-1] in order, and `schema_version` records where a
 * database stands. Instances starting together take turns on an advisory lock, so each
 * migration runs once; a database migrated by a newer powbridge is refused, not guessed at.
 *
 * Version 1: the spent log (`spent`, with `spent_head`, the counter that orders it: see
 * postgres-spent-log.ts) and the grants (`grant_tickets`), the same rows as the SQLite files
 * (src/tickets/spent-store.ts, src/tickets/grant-store.ts).
 * Version 2: the family's key vault (`key_vault`, with `key_vault_head`: the family key's check
 * value and a counter bumped by every change), key files sealed under the family key
 * (postgres-key-vault.ts).
 * Version 3: the peer ledger of Protocol 2 (`peer_cursors`, `peer_served`, `peer_requests_out`,
 * `peer_requests_in`, `peer_settlements`, `peer_conflicts`, `peer_billed_conflicts`), the tables of
 * the SQLite `peers.sqlite` (src/peers/peer-ledger.ts), shared by the family
 * (postgres-peer-ledger.ts).
 * Version 4: `ao_sessions`, the family's open Abe–Okamoto signing sessions with their expiry
 * (postgres-session-slots.ts), and `issued_tickets`, tickets issued per (day, key, scheme)
 * (postgres-issued-counts.ts).
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
  // Version 2: the key vault (postgres-key-vault.ts). Public parts in clear, the key file's
  // text only sealed (nonce, ciphertext + tag); one identity per family.
  `
  CREATE TABLE key_vault (
    kind           text   NOT NULL CHECK (kind IN ('identity', 'ticket')),
    key_id         text   NOT NULL CHECK (key_id ~ '^([0-9a-f]{16}|[0-9a-f]{64})$'),
    scheme         text   CHECK (length(scheme) <= 64),
    not_before_day bigint CHECK (not_before_day >= 0),
    not_after_day  bigint CHECK (not_after_day >= not_before_day),
    public_key     text   NOT NULL CHECK (public_key ~ '^[0-9a-f]+$'),
    nonce          bytea  NOT NULL CHECK (length(nonce) = 12),
    sealed         bytea  NOT NULL CHECK (length(sealed) > 16),
    PRIMARY KEY (kind, key_id)
  );
  CREATE UNIQUE INDEX key_vault_one_identity ON key_vault (kind) WHERE kind = 'identity';
  CREATE TABLE key_vault_head (
    one        boolean PRIMARY KEY DEFAULT true CHECK (one),
    key_check  bytea   CHECK (length(key_check) = 16),
    generation bigint  NOT NULL CHECK (generation >= 0)
  );
  INSERT INTO key_vault_head (generation) VALUES (0);
  `,
  // Version 3: the peer ledger (postgres-peer-ledger.ts), one for the whole family.
  `
  CREATE TABLE peer_cursors (
    peer   text   PRIMARY KEY CHECK (length(peer) BETWEEN 1 AND 64),
    pulled bigint NOT NULL DEFAULT 0 CHECK (pulled >= 0),
    acked  bigint NOT NULL DEFAULT 0 CHECK (acked >= 0)
  );
  CREATE TABLE peer_served (
    serial     bytea   PRIMARY KEY CHECK (length(serial) = 32),
    peer       text    NOT NULL,
    key_id     bytea   NOT NULL CHECK (length(key_id) = 8),
    day        bigint  NOT NULL,
    seq        bigint  NOT NULL,
    at         bigint  NOT NULL,
    offline    boolean NOT NULL,
    request_id text
  );
  CREATE INDEX peer_served_unbilled ON peer_served (peer, request_id);
  CREATE TABLE peer_requests_out (
    id           text    PRIMARY KEY,
    peer         text    NOT NULL,
    count        integer NOT NULL,
    digest       text    NOT NULL,
    period_from  bigint  NOT NULL,
    period_to    bigint  NOT NULL,
    created_at   bigint  NOT NULL,
    delivered_at bigint
  );
  CREATE INDEX peer_requests_out_peer ON peer_requests_out (peer, delivered_at);
  CREATE TABLE peer_requests_in (
    peer        text    NOT NULL,
    id          text    NOT NULL,
    count       integer NOT NULL,
    digest      text    NOT NULL,
    period_from bigint  NOT NULL,
    period_to   bigint  NOT NULL,
    known       integer NOT NULL,
    received_at bigint  NOT NULL,
    PRIMARY KEY (peer, id)
  );
  CREATE TABLE peer_settlements (
    peer         text    NOT NULL,
    id           text    NOT NULL,
    direction    text    NOT NULL CHECK (direction IN ('paid', 'received')),
    count        integer NOT NULL CHECK (count > 0),
    method       text    NOT NULL,
    at           bigint  NOT NULL,
    delivered_at bigint,
    tickets      text,
    PRIMARY KEY (peer, id, direction)
  );
  CREATE TABLE peer_conflicts (
    serial      bytea  NOT NULL,
    peer        text   NOT NULL,
    key_id      bytea  NOT NULL,
    day         bigint NOT NULL,
    ours_at     bigint NOT NULL,
    theirs_at   bigint NOT NULL,
    detected_at bigint NOT NULL,
    PRIMARY KEY (serial, peer)
  );
  CREATE TABLE peer_billed_conflicts (
    peer       text  NOT NULL,
    serial     bytea NOT NULL CHECK (length(serial) = 32),
    request_id text  NOT NULL,
    PRIMARY KEY (peer, serial)
  );
  `,
  // Version 4: Abe–Okamoto session slots and issued-ticket counters (issue 17, part C).
  `
  CREATE TABLE ao_sessions (
    id         bigserial PRIMARY KEY,
    key_id     bytea  NOT NULL CHECK (length(key_id) = 8),
    day        bigint NOT NULL CHECK (day >= 0),
    expires_ms bigint NOT NULL CHECK (expires_ms > 0)
  );
  CREATE INDEX ao_sessions_slot ON ao_sessions (key_id, day, expires_ms);
  CREATE TABLE issued_tickets (
    day    bigint NOT NULL CHECK (day >= 0),
    key_id bytea  NOT NULL CHECK (length(key_id) = 8),
    scheme text   NOT NULL CHECK (scheme IN ('ao', 'rsa')),
    count  bigint NOT NULL CHECK (count >= 0),
    PRIMARY KEY (day, key_id, scheme)
  );
  `,
];

/** The schema version this powbridge creates and understands. */
export const POSTGRES_SCHEMA_VERSION = MIGRATIONS.length;

/** pg_advisory_xact_lock's key for migrations: "powbrdg" in ASCII. */
const MIGRATION_LOCK = '31647755935048807';

/** Bring the database to POSTGRES_SCHEMA_VERSION; resolves the version it was at. */
export async function migrate(pool: pg.Pool): Promise<number> {
  return inTransaction(pool, async (client) => {
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
    return from;
  });
}
