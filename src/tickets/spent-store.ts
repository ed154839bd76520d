import Database from 'better-sqlite3';
import { checkDurablePath, createPrivateFile, openDurableDb } from '../lib/durable-db.js';
import { runNow } from '../lib/run-now.js';
import { SpentStoreBusyError } from '../storage/errors.js';
import {
  asBuffer,
  checkPage,
  checkSpend,
  type SpendRequest,
  type SpendResult,
  type SpentLog,
  type SpentRecord,
} from '../storage/spent-log.js';

/**
 * The spent-ticket store of a single relay (docs/design.md §6.3), the SQLite implementation of
 * `SpentLog` (src/storage/spent-log.ts): every redeemed serial, on disk, before any grant.
 *
 * One SQLite file (better-sqlite3) in WAL mode with `synchronous = FULL`, so a spend is on
 * stable storage when `trySpend` resolves: a crash after that can lose a grant but never the
 * record of the spend, and the caller grants only after `trySpend` said `spent: true`.
 * Check-and-insert is one `INSERT … ON CONFLICT(serial) DO NOTHING` statement: the UNIQUE
 * index decides, under SQLite's write lock, so two redemptions of one serial can never both
 * succeed, whether they race in one process, in threads or in processes sharing the file.
 * better-sqlite3 is synchronous: each method does its work before it returns its promise.
 *
 * The table is the append-only log that backup relays will replicate (docs/design.md §7): `seq` is
 * an AUTOINCREMENT key, so a number is never handed out twice, not even after `prune` deleted
 * the newest rows. A peer pulls with `since(cursor)`; because each spend is its own write
 * transaction and writers are serialised, rows become visible in `seq` order, and a cursor
 * can never skip a row that commits later with a smaller number. Pruning removes only rows of
 * days whose tickets nobody accepts any more, so a peer whose cursor falls behind the oldest
 * remaining row misses nothing it could still act on; its cursor stays valid as it is.
 */

const SCHEMA_VERSION = 1;
/** The spent store's file in the relay's data directory. */
export const SPENT_STORE_FILE = 'spent.sqlite';

export interface SpentStoreOptions {
  /** How long a writer waits for another connection's lock before giving up (ms). */
  busyTimeoutMs?: number;
}

interface InsertParams {
  serial: Buffer;
  keyId: Buffer;
  day: number;
  at: number;
  origin: string;
}

interface Row {
  seq: number;
  serial: Buffer;
  key_id: Buffer;
  day: number;
  spent_at: number;
  origin: string;
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS spent (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    serial   BLOB    NOT NULL UNIQUE CHECK (length(serial) = 32),
    key_id   BLOB    NOT NULL CHECK (length(key_id) = 8),
    day      INTEGER NOT NULL,
    spent_at INTEGER NOT NULL,
    origin   TEXT    NOT NULL
  ) STRICT;
  CREATE INDEX IF NOT EXISTS spent_day ON spent (day);
`;

export class SpentStore implements SpentLog {
  private readonly insert: Database.Statement<[InsertParams]>;
  private readonly exists: Database.Statement<[Buffer], number>;
  private readonly deleteBefore: Database.Statement<[number]>;
  private readonly after: Database.Statement<[number, number], Row>;
  private readonly total: Database.Statement<[], number>;
  private readonly localAfter: Database.Statement<[number, number], Row>;
  private readonly bySerial: Database.Statement<[Buffer], Row>;
  private readonly lastSeq: Database.Statement<[], number>;

  private constructor(private readonly db: Database.Database) {
    // NOT EXISTS decides (its read runs inside the statement's write transaction, so under
    // the write lock); the UNIQUE index backs it. Not a bare ON CONFLICT DO NOTHING: that
    // allocates a sequence number even for a refused serial, which would make every refusal
    // a durable write (and an fsync) that a replayed ticket could trigger at will.
    this.insert = db.prepare<[InsertParams]>(
      `INSERT INTO spent (serial, key_id, day, spent_at, origin)
       SELECT @serial, @keyId, @day, @at, @origin
       WHERE NOT EXISTS (SELECT 1 FROM spent WHERE serial = @serial)
       ON CONFLICT (serial) DO NOTHING`,
    );
    this.exists = db.prepare<[Buffer], number>('SELECT 1 FROM spent WHERE serial = ?').pluck();
    this.deleteBefore = db.prepare('DELETE FROM spent WHERE day < ?');
    this.after = db.prepare<[number, number], Row>(
      'SELECT seq, serial, key_id, day, spent_at, origin FROM spent WHERE seq > ? ORDER BY seq LIMIT ?',
    );
    this.total = db.prepare<[], number>('SELECT count(*) FROM spent').pluck();
    this.localAfter = db.prepare<[number, number], Row>(
      `SELECT seq, serial, key_id, day, spent_at, origin FROM spent
       WHERE seq > ? AND origin = 'local' ORDER BY seq LIMIT ?`,
    );
    // AUTOINCREMENT's own counter: never moves back, not even when prune deleted the newest rows.
    this.lastSeq = db
      .prepare<[], number>(`SELECT seq FROM sqlite_sequence WHERE name = 'spent'`)
      .pluck();
    this.bySerial = db.prepare<[Buffer], Row>(
      'SELECT seq, serial, key_id, day, spent_at, origin FROM spent WHERE serial = ?',
    );
  }

  /**
   * Open (or create) the store. The file and SQLite's -wal and -shm beside it are 0600: the
   * serials with their spend times are a record of when someone paid, kept as private as we
   * can. SQLite gives -wal and -shm the database file's mode; the chmod after opening is for
   * files left by an older run with a wider mode.
   */
  static open(file: string, options: SpentStoreOptions = {}): SpentStore {
    checkDurablePath(file, 'spent store');
    createPrivateFile(file);
    return new SpentStore(
      openDurableDb(file, {
        what: 'spent store',
        schema: SCHEMA,
        schemaVersion: SCHEMA_VERSION,
        busyTimeoutMs: options.busyTimeoutMs,
      }),
    );
  }

  /**
   * Record a spend unless the serial is already recorded. `spent: true` means this call
   * recorded it and the record is durable; only then may the caller grant anything.
   */
  trySpend(request: SpendRequest): Promise<SpendResult> {
    return runNow(() => this.busyAware(() => this.spendOne(request)));
  }

  /**
   * Group commit: several check-and-inserts in one transaction, so one fsync covers them
   * all. Each serial is still decided by its own statement inside the transaction (a serial
   * twice in one batch is spent once), and nothing is durable, or returned, before COMMIT.
   */
  trySpendMany(requests: readonly SpendRequest[]): Promise<SpendResult[]> {
    return runNow(() => this.busyAware(() => this.spendAll(requests)));
  }

  private readonly spendAll = (requests: readonly SpendRequest[]): SpendResult[] =>
    this.db.transaction((all: readonly SpendRequest[]) => all.map((r) => this.spendOne(r)))(
      requests,
    );

  private spendOne(request: SpendRequest): SpendResult {
    const { serial, keyId, day, at, origin } = checkSpend(request);
    // run() steps the statement to completion, so the autocommit (and its fsync) has
    // happened, or thrown, before we look at the result.
    const result = this.insert.run({
      serial: asBuffer(serial),
      keyId: asBuffer(keyId),
      day,
      at,
      origin,
    });
    if (result.changes === 0) return { spent: false };
    return { spent: true, seq: Number(result.lastInsertRowid) };
  }

  private busyAware<T>(write: () => T): T {
    try {
      return write();
    } catch (err) {
      if (err instanceof Database.SqliteError && err.code.startsWith('SQLITE_BUSY')) {
        throw new SpentStoreBusyError('spent store is busy');
      }
      throw err;
    }
  }

  isSpent(serial: Uint8Array): Promise<boolean> {
    return runNow(() => this.exists.get(asBuffer(serial)) !== undefined);
  }

  /**
   * Delete the rows of days before `beforeDay`; returns how many. Call it only with a day
   * whose tickets can no longer be redeemed (see `oldestKeptDay` in redeemer.ts): a pruned
   * serial of a still-valid day could be spent again. Sequence numbers are never reused.
   */
  prune(beforeDay: number): Promise<number> {
    return runNow(() => {
      if (!Number.isInteger(beforeDay)) throw new RangeError('bad day');
      return this.deleteBefore.run(beforeDay).changes;
    });
  }

  /** Up to `limit` rows with seq > `cursor`, in seq order; the last row's seq is the next cursor. */
  since(cursor: number, limit = 1_000): Promise<SpentRecord[]> {
    return runNow(() => {
      checkPage(cursor, limit);
      return this.after.all(cursor, limit).map(toRecord);
    });
  }

  /**
   * The same, only our own redemptions (origin 'local'): what a peer replicates from us.
   * Rows we learnt from peers are theirs to serve, so nothing travels in a loop.
   */
  localSince(cursor: number, limit = 1_000): Promise<SpentRecord[]> {
    return runNow(() => {
      checkPage(cursor, limit);
      return this.localAfter.all(cursor, limit).map(toRecord);
    });
  }

  /**
   * The highest sequence number ever handed out (0 for a new store). A peer whose cursor is
   * above it is reading a store that was rebuilt or restored from a backup.
   */
  head(): Promise<number> {
    return runNow(() => this.lastSeq.get() ?? 0);
  }

  /** The record of one serial, if it is spent. */
  lookup(serial: Uint8Array): Promise<SpentRecord | undefined> {
    return runNow(() => {
      const row = this.bySerial.get(asBuffer(serial));
      return row ? toRecord(row) : undefined;
    });
  }

  count(): Promise<number> {
    return runNow(() => this.total.get() ?? 0);
  }

  close(): Promise<void> {
    return runNow(() => {
      this.db.close();
    });
  }
}

function toRecord(row: Row): SpentRecord {
  return {
    seq: row.seq,
    serial: new Uint8Array(row.serial),
    keyId: new Uint8Array(row.key_id),
    day: row.day,
    at: row.spent_at,
    origin: row.origin,
  };
}
