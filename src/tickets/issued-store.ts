import type Database from 'better-sqlite3';
import { checkDurablePath, createPrivateFile, openDurableDb } from '../lib/durable-db.js';
import { runNow } from '../lib/run-now.js';
import {
  checkIssuedCount,
  type IssuedCount,
  type IssuedCountStorage,
  type IssuingScheme,
} from '../storage/issued-counter.js';

/**
 * Issued-ticket counts of a single relay on disk (src/storage/issued-counter.ts): one row per
 * (day, key, scheme) in `<dataDir>/issued.sqlite`, so the day's count survives a restart. A
 * file of its own rather than a table in the spent store: the spent store is the log peers
 * replicate and its schema moves with Protocol 2, while these rows are statistics that no
 * other part reads. Opened as the other stores are (src/lib/durable-db.ts: WAL,
 * synchronous = FULL, 0600); a write is one transaction per batch, at most one a second.
 */

const SCHEMA_VERSION = 1;
/** The counter's file in the relay's data directory. */
export const ISSUED_STORE_FILE = 'issued.sqlite';

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS issued_tickets (
    day    INTEGER NOT NULL CHECK (day >= 0),
    key_id BLOB    NOT NULL CHECK (length(key_id) = 8),
    scheme TEXT    NOT NULL CHECK (scheme IN ('ao', 'rsa')),
    count  INTEGER NOT NULL CHECK (count >= 0),
    PRIMARY KEY (day, key_id, scheme)
  ) STRICT, WITHOUT ROWID;
`;

interface Row {
  key_id: Buffer;
  scheme: IssuingScheme;
  count: number;
}

export class IssuedStore implements IssuedCountStorage {
  private readonly upsert: Database.Statement<[number, Buffer, string, number]>;
  private readonly ofDay: Database.Statement<[number], Row>;

  private constructor(private readonly db: Database.Database) {
    this.upsert = db.prepare(
      `INSERT INTO issued_tickets (day, key_id, scheme, count) VALUES (?, ?, ?, ?)
       ON CONFLICT (day, key_id, scheme) DO UPDATE SET count = count + excluded.count`,
    );
    this.ofDay = db.prepare(
      'SELECT key_id, scheme, count FROM issued_tickets WHERE day = ? ORDER BY key_id, scheme',
    );
  }

  /** Open (or create) the store; the file and its -wal and -shm are 0600. */
  static open(file: string, options: { busyTimeoutMs?: number } = {}): IssuedStore {
    checkDurablePath(file, 'issued-ticket counts');
    createPrivateFile(file);
    const db = openDurableDb(file, {
      what: 'issued-ticket counts',
      schema: SCHEMA,
      schemaVersion: SCHEMA_VERSION,
      busyTimeoutMs: options.busyTimeoutMs,
    });
    return new IssuedStore(db);
  }

  add(counts: readonly IssuedCount[]): Promise<void> {
    return runNow(() => {
      const rows = counts.map(checkIssuedCount).filter((c) => c.count > 0);
      this.db.transaction(() => {
        for (const c of rows) {
          this.upsert.run(c.day, Buffer.from(c.keyId, 'hex'), c.scheme, c.count);
        }
      })();
    });
  }

  day(day: number): Promise<IssuedCount[]> {
    return runNow(() =>
      this.ofDay.all(day).map((r) => ({
        day,
        keyId: r.key_id.toString('hex'),
        scheme: r.scheme,
        count: r.count,
      })),
    );
  }

  close(): Promise<void> {
    return runNow(() => {
      if (this.db.open) this.db.close();
    });
  }
}
