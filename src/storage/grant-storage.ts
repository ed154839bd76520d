/**
 * Paid grants on disk as the rest of the relay sees them (docs/design.md §6.3): a restart keeps
 * every unexpired grant, since its ticket is spent for good. One row per ticket run of a grant:
 * (grant id, until, count), where the id is SHA-256 of the token, never the token. Two engines
 * implement it: SQLite beside the spent store (src/tickets/grant-store.ts) and PostgreSQL
 * (src/storage/postgres-grant-storage.ts).
 *
 * `record` resolves only once its write is committed (group-committed with the others of the
 * same moment) and never rejects for a failed write: the ticket is spent by then, so the
 * redemption is answered anyway and the failure goes to the store's `onError` (the grant then
 * lasts until restart).
 */

/** A grant's tickets that stop counting at `until` (as the grant book's runs). */
export interface StoredGrantRun {
  /** Unix seconds. */
  until: number;
  count: number;
}

/** Where restored grants go: the grant book (src/tickets/grant-book.ts). */
export interface GrantRestorer {
  restore(id: string, runs: readonly StoredGrantRun[], now: number): boolean;
}

export interface GrantStorage {
  /** One ticket paid into grant `id` (a new grant or a top-up), counting until `until`. */
  record(id: string, until: number): Promise<void>;
  /**
   * Put every grant that still counts at `now` into `book` (an empty one, at start), after
   * deleting the expired ones; resolves how many grants were restored.
   */
  restore(book: GrantRestorer, now: number): Promise<number>;
  /**
   * The runs of one grant that still count at `now`, oldest first (none: unknown or
   * expired). How an instance of a family picks up a grant another instance paid or topped up.
   */
  load(id: string, now: number): Promise<StoredGrantRun[]>;
  /** Delete the ticket runs that stopped counting by `now`; resolves how many rows. */
  sweep(now: number): Promise<number>;
  /** Ticket runs stored (expired ones included until the next sweep). */
  count(): Promise<number>;
  /** Commit what is queued, then let go of the store. */
  close(): Promise<void>;
}

/** A checked write: the id's 32 bytes and a whole `until`. Throws RangeError on bad input. */
export function checkGrantWrite(id: string, until: number): { id: Buffer; until: number } {
  const bytes = Buffer.from(id, 'base64url');
  if (bytes.length !== 32) throw new RangeError('grant id must be 32 bytes');
  if (!Number.isSafeInteger(until) || until < 0) throw new RangeError('until must be unix seconds');
  return { id: bytes, until };
}

/** A grant id's 32 bytes, or null when `id` is not one (a lookup finds nothing). */
export function grantIdBytes(id: string): Buffer | null {
  const bytes = Buffer.from(id, 'base64url');
  return bytes.length === 32 ? bytes : null;
}

/**
 * Hand stored rows (sorted by grant id, then until) to `book`, grants in increasing expiry as
 * the book wants them; returns how many were restored.
 */
export function restoreRows(
  rows: Iterable<{ grantId: Buffer; until: number; count: number }>,
  book: GrantRestorer,
  now: number,
): number {
  const grants = new Map<string, StoredGrantRun[]>();
  for (const row of rows) {
    const id = row.grantId.toString('base64url');
    const runs = grants.get(id) ?? [];
    runs.push({ until: row.until, count: row.count });
    grants.set(id, runs);
  }
  const byExpiry = [...grants].sort(([, a], [, b]) => lastUntil(a) - lastUntil(b));
  let restored = 0;
  for (const [id, runs] of byExpiry) if (book.restore(id, runs, now)) restored++;
  return restored;
}

function lastUntil(runs: readonly StoredGrantRun[]): number {
  return runs.reduce((most, run) => Math.max(most, run.until), 0);
}
