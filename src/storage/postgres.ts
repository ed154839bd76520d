import pg from 'pg';
import { parseIntoClientConfig } from 'pg-connection-string';
import { StorageUnavailableError } from './errors.js';
import { migrate } from './postgres-schema.js';
import { describeStorageUrl } from './storage-url.js';

/**
 * One PostgreSQL database shared by a relay family (docs/design.md §6.3, docs/operating.md
 * "Running a family"): a connection pool (the `pg` client), checked for durability and
 * migrated to this relay's schema when it opens. The stores on it (postgres-spent-log.ts,
 * postgres-grant-storage.ts) borrow the pool; whoever opened the database closes it.
 */

export interface PostgresOptions {
  /** postgres://user@host:port/database (storage-url.ts). */
  url: string;
  /** From `storage.passwordFile`; without it `pg` reads $PGPASSWORD (or ~/.pgpass). */
  password?: string | undefined;
  /** Connections in the pool (default 10). */
  poolSize?: number | undefined;
  /** How long to wait for a connection before a request fails as unavailable (default 5 s). */
  connectTimeoutMs?: number | undefined;
  /** An idle connection failed (the server restarted, the network dropped); the pool replaces it. */
  onError?: ((err: unknown) => void) | undefined;
}

/** Where open() failed, with the URL as logs may show it (no password). */
export class PostgresOpenError extends Error {
  override name = 'PostgresOpenError';
}

/** SQLSTATE classes and codes that mean "the server is not there for us now". */
const UNAVAILABLE_SQLSTATE = /^(08|53|57P0[1-4])/;
/** Socket errors of the connection itself. */
const UNAVAILABLE_ERRNO = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);
/** pg's own words for a connection that went away or never came. */
const UNAVAILABLE_MESSAGE =
  /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Cannot use a pool after calling end/;

/** A driver error as the stores report it: unavailability as StorageUnavailableError. */
export function storageError(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const code = 'code' in err && typeof err.code === 'string' ? err.code : '';
  if (UNAVAILABLE_SQLSTATE.test(code) || UNAVAILABLE_ERRNO.has(code)) {
    return new StorageUnavailableError(`ticket database unavailable: ${err.message}`, {
      cause: err,
    });
  }
  if (UNAVAILABLE_MESSAGE.test(err.message)) {
    return new StorageUnavailableError(`ticket database unavailable: ${err.message}`, {
      cause: err,
    });
  }
  return err;
}

/** int8 and numeric come back from `pg` as strings: as a number, checked. */
export function safeInteger(value: unknown): number {
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isSafeInteger(n)) throw new RangeError(`not a safe integer: ${String(value)}`);
  return n;
}

export class PostgresDatabase {
  private closed = false;

  private constructor(
    readonly pool: pg.Pool,
    /** The URL without secrets, for logs. */
    readonly description: string,
  ) {}

  /**
   * Connect, check that commits are durable, bring the schema up to date. Refuses a server
   * with `fsync = off` (a spend could vanish with the machine); a server whose
   * `synchronous_commit` is off gets it switched on for our sessions, so a COMMIT that
   * returned is on disk.
   */
  static async open(options: PostgresOptions): Promise<PostgresDatabase> {
    const description = describeStorageUrl(options.url);
    // Parsed here rather than passed as connectionString: pg would let the URL's (empty)
    // password override the one from the file.
    const base: pg.PoolConfig = {
      ...parseIntoClientConfig(options.url),
      ...(options.password === undefined ? {} : { password: options.password }),
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
      application_name: 'powbridge',
    };
    let settings: { fsync: string; synchronousCommit: string };
    try {
      settings = await probe(base);
    } catch (err) {
      throw new PostgresOpenError(`storage: cannot use ${description}: ${reason(err)}`, {
        cause: err,
      });
    }
    if (settings.fsync !== 'on') {
      throw new PostgresOpenError(
        `storage: ${description} runs with fsync = ${settings.fsync}: a spent ticket could ` +
          'be lost with the machine, so powbridge will not keep tickets there',
      );
    }
    const pool = new pg.Pool({
      ...base,
      max: options.poolSize ?? 10,
      ...(settings.synchronousCommit === 'off'
        ? { options: [base.options, '-c synchronous_commit=on'].filter(Boolean).join(' ') }
        : {}),
    });
    // Without a listener an idle connection's error would crash the process.
    pool.on('error', (err) => options.onError?.(err));
    const database = new PostgresDatabase(pool, description);
    try {
      await migrate(pool);
    } catch (err) {
      await database.close();
      throw new PostgresOpenError(`storage: cannot migrate ${description}: ${reason(err)}`, {
        cause: err,
      });
    }
    return database;
  }

  /** Close every connection; idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }
}

async function probe(
  config: pg.ClientConfig,
): Promise<{ fsync: string; synchronousCommit: string }> {
  const client = new pg.Client(config);
  // A failed connect emits 'error' too; the rejection below reports it.
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    // A login refused mid-handshake can leave the socket open: close it.
    await client.end().catch(() => undefined);
    throw err;
  }
  try {
    const result = await client.query<{ fsync: string; sync: string }>(
      `SELECT current_setting('fsync') AS fsync, current_setting('synchronous_commit') AS sync`,
    );
    const row = result.rows[0];
    if (!row) throw new Error('no answer to a settings query');
    return { fsync: row.fsync, synchronousCommit: row.sync };
  } finally {
    await client.end();
  }
}

function reason(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
