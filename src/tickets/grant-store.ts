import type Database from 'better-sqlite3';
import { checkDurablePath, createPrivateFile, openDurableDb } from '../lib/durable-db.js';
import { runNow } from '../lib/run-now.js';
import {
  checkGrantWrite,
  type GrantRestorer,
  type GrantStorage,
  grantIdBytes,
  restoreRows,
  type StoredGrantRun,
} from '../storage/grant-storage.js';

/**
 * Paid grants on disk (docs/design.md §6.3), so a restart keeps every unexpired grant usable:
 * its ticket is spent for good, so its grant must outlive the process too. The SQLite
 * implementation of `GrantStorage` (src/storage/grant-storage.ts), for a single relay.
 *
 * One SQLite file beside the spent store (`<dataDir>/grants.sqlite`, src/lib/durable-db.ts:
 * WAL, synchronous = FULL, 0600). A row is one ticket run of a grant: (grant id, until,
 * count). The grant id is SHA-256 of the token (`grantId`), never the token, so a copied file
 * hands out no live grant. Nothing else is stored: no serial, no key id, no time of
 * redemption beyond the run's end, as in the grant book.
 *
 * Writes are group-committed like spends (src/tickets/spend-batcher.ts): the grants of one
 * event-loop turn share one transaction and one fsync, and each `record` resolves only after
 * that commit, so the redemption answers after its grant is on disk.
 *
 * Why a second file and a second commit rather than the spend and the grant in one
 * transaction: the spent store is the log peers replicate and other processes may share, and
 * a grant row next to its serial, in one transaction, would keep on disk the link between a
 * ticket and its grant that the grant book is careful not to hold. SQLite's ATTACH would not
 * help either: in WAL mode a transaction over two files is atomic for each file, not for both.
 * So the order is: spend committed → grant committed → answer. A crash between the two
 * commits leaves the ticket spent and no grant, the same accepted loss as when grants lived
 * in memory (one ticket's window, for a redemption whose answer never arrived).
 */

const SCHEMA_VERSION = 1;
/** The grant store's file in the relay's data directory. */
export const GRANT_STORE_FILE = 'grants.sqlite';
const MAX_BATCH = 256;

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS grant_tickets (
    grant_id BLOB    NOT NULL CHECK (length(grant_id) = 32),
    until    INTEGER NOT NULL,
    count    INTEGER NOT NULL CHECK (count > 0),
    PRIMARY KEY (grant_id, until)
  ) STRICT, WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS grant_tickets_until ON grant_tickets (until);
`;

export interface GrantStoreOptions {
  /** How long a write waits for another connection's lock (ms). */
  busyTimeoutMs?: number;
  /**
   * A write that failed (disk full, I/O error). The redemption is answered anyway: its
   * ticket is already spent, so refusing would cost the client the ticket as well; the grant
   * then lasts until the next restart only. The relay logs these.
   */
  onError?: (err: unknown) => void;
}

interface Write {
  id: Buffer;
  until: number;
}

interface Row {
  grant_id: Buffer;
  until: number;
  count: number;
}

export class GrantStore implements GrantStorage {
  private readonly upsert: Database.Statement<[Buffer, number]>;
  private readonly live: Database.Statement<[number], Row>;
  private readonly runsOf: Database.Statement<[Buffer, number], Row>;
  private readonly deleteBefore: Database.Statement<[number]>;
  private readonly total: Database.Statement<[], number>;
  private readonly onError: (err: unknown) => void;
  private queue: { write: Write; done: () => void }[] = [];
  private scheduled = false;

  private constructor(
    private readonly db: Database.Database,
    options: GrantStoreOptions,
  ) {
    this.onError = options.onError ?? (() => {});
    this.upsert = db.prepare<[Buffer, number]>(
      `INSERT INTO grant_tickets (grant_id, until, count) VALUES (?, ?, 1)
       ON CONFLICT (grant_id, until) DO UPDATE SET count = count + 1`,
    );
    this.live = db.prepare<[number], Row>(
      'SELECT grant_id, until, count FROM grant_tickets WHERE until > ? ORDER BY grant_id, until',
    );
    this.runsOf = db.prepare<[Buffer, number], Row>(
      'SELECT grant_id, until, count FROM grant_tickets WHERE grant_id = ? AND until > ? ORDER BY until',
    );
    this.deleteBefore = db.prepare<[number]>('DELETE FROM grant_tickets WHERE until <= ?');
    this.total = db.prepare<[], number>('SELECT count(*) FROM grant_tickets').pluck();
  }

  /** Open (or create) the store; the file and its -wal and -shm are 0600. */
  static open(file: string, options: GrantStoreOptions = {}): GrantStore {
    checkDurablePath(file, 'grant store');
    createPrivateFile(file);
    const db = openDurableDb(file, {
      what: 'grant store',
      schema: SCHEMA,
      schemaVersion: SCHEMA_VERSION,
      busyTimeoutMs: options.busyTimeoutMs,
    });
    return new GrantStore(db, options);
  }

  /**
   * One ticket paid into grant `id` (a new grant or a top-up), counting until `until`.
   * Resolves once the write is committed, together with the others of this turn; never
   * rejects (a failed write goes to `onError`).
   */
  record(id: string, until: number): Promise<void> {
    return new Promise((resolve) => {
      this.queue.push({ write: checkGrantWrite(id, until), done: resolve });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /**
   * Put every grant that still counts at `now` into `book` (an empty one, at start), in
   * increasing expiry as the book wants them, after deleting the expired ones from disk.
   * Returns how many grants were restored.
   */
  restore(book: GrantRestorer, now: number): Promise<number> {
    return runNow(() => {
      this.deleteBefore.run(Math.floor(now));
      const rows = this.live.all(Math.floor(now));
      return restoreRows(
        rows.map((row) => ({ grantId: row.grant_id, until: row.until, count: row.count })),
        book,
        now,
      );
    });
  }

  /** The runs of grant `id` that still count at `now`, oldest first. */
  load(id: string, now: number): Promise<StoredGrantRun[]> {
    return runNow(() => {
      const bytes = grantIdBytes(id);
      if (bytes === null) return [];
      return this.runsOf
        .all(bytes, Math.floor(now))
        .map((row) => ({ until: row.until, count: row.count }));
    });
  }

  /** Delete the ticket runs that stopped counting by `now`; returns how many rows. */
  sweep(now: number): Promise<number> {
    return runNow(() => this.deleteBefore.run(Math.floor(now)).changes);
  }

  /** Ticket runs on disk (expired ones included until the next sweep). */
  count(): Promise<number> {
    return runNow(() => this.total.get() ?? 0);
  }

  /** Commit what is queued, then close. */
  close(): Promise<void> {
    return runNow(() => {
      this.flush();
      this.db.close();
    });
  }

  private flush(): void {
    this.scheduled = false;
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, MAX_BATCH);
      this.commit(batch.map((b) => b.write));
      for (const b of batch) b.done();
    }
  }

  private commit(writes: readonly Write[]): void {
    try {
      this.db.transaction(() => {
        for (const { id, until } of writes) this.upsert.run(id, until);
      })();
    } catch (err) {
      this.onError(err);
    }
  }
}
