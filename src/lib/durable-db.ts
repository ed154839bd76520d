import { chmodSync, closeSync, existsSync, openSync } from 'node:fs';
import Database from 'better-sqlite3';

/**
 * An SQLite database for records that must survive a crash once written (spent serials,
 * wallet tickets): WAL with synchronous=FULL, read back because a silently ignored pragma
 * would turn "written" into "maybe written"; a schema version check; and the -wal/-shm files
 * kept at 0600 (SQLite gives them the database's mode, but an older run may have left wider).
 */

export interface DurableDbOptions {
  /** Names the store in errors ("spent store", "wallet"). */
  what: string;
  schema: string;
  schemaVersion: number;
  /** How long to wait for another process's write lock (default 5 s). */
  busyTimeoutMs?: number | undefined;
}

/** Refuse paths that would not be a durable file. */
export function checkDurablePath(file: string, what: string): void {
  if (file === '' || file === ':memory:' || file.startsWith('file:')) {
    throw new RangeError(`${what}: needs a plain file path (durability is the point)`);
  }
}

/**
 * Create `file` if it is missing, and leave it at mode 0600: the umask can only narrow the mode
 * given to open, so the chmod makes it exact (and narrows a file an older run left wider).
 */
export function createPrivateFile(file: string): void {
  closeSync(openSync(file, 'a', 0o600));
  chmodSync(file, 0o600);
}

/** Open an existing 0600 file as a durable database; closes it again on any failure. */
export function openDurableDb(file: string, options: DurableDbOptions): Database.Database {
  const { what } = options;
  const db = new Database(file, { timeout: options.busyTimeoutMs ?? 5_000 });
  try {
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (mode !== 'wal') throw new Error(`${what}: journal_mode is ${String(mode)}, not wal`);
    db.pragma('synchronous = FULL');
    if (db.pragma('synchronous', { simple: true }) !== 2) {
      throw new Error(`${what}: could not set synchronous = FULL`);
    }
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > options.schemaVersion) {
      throw new Error(`${what}: schema version ${version} is newer than this powbridge`);
    }
    db.exec(options.schema);
    if (version < options.schemaVersion) db.pragma(`user_version = ${options.schemaVersion}`);
    for (const side of [`${file}-wal`, `${file}-shm`]) {
      if (existsSync(side)) chmodSync(side, 0o600);
    }
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}
