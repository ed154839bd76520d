/**
 * The spent-ticket store as the rest of the relay sees it (docs/design.md §6.3, §7): every
 * redeemed serial, recorded durably before any grant, in a log peers replicate. Two engines
 * implement it: one SQLite file per relay (src/tickets/spent-store.ts) and one PostgreSQL
 * database for a family of relays (src/storage/postgres-spent-log.ts). The interface is
 * asynchronous because PostgreSQL is; SQLite answers at once.
 *
 * What every implementation promises:
 * - `trySpend` resolves `spent: true` only for the one call that recorded the serial, and only
 *   once the record is durable; a serial is decided by one statement on a unique key, never by
 *   a read followed by a write.
 * - `trySpendMany` decides each serial the same way, all in one transaction (group commit); a
 *   serial twice in one batch is spent once, by its first occurrence.
 * - `seq` numbers are never handed out twice, and rows become visible in `seq` order, so a
 *   cursor taken from `since` never skips a row that commits later with a smaller number.
 */

/** A spend's origin is 'local' or a peer's name: at most this long. */
export const MAX_ORIGIN_LENGTH = 64;
/** The most rows one `since` / `localSince` page may ask for. */
export const MAX_SINCE_LIMIT = 10_000;

export interface SpendRequest {
  /** SHA-256(x_c), 32 bytes. */
  serial: Uint8Array;
  /** The ticket key's id, 8 bytes. */
  keyId: Uint8Array;
  /** The ticket's issue day (UTC days since 1970-01-01). */
  day: number;
  /** Unix seconds of the spend. */
  at: number;
  /** 'local' for our own redemptions, a peer's name for spends replicated from it. */
  origin?: string | undefined;
}

export type SpendResult = { spent: true; seq: number } | { spent: false };

/** One row of the log, as `since` hands it to replication. */
export interface SpentRecord {
  seq: number;
  serial: Uint8Array;
  keyId: Uint8Array;
  day: number;
  at: number;
  origin: string;
}

export interface SpentLog {
  /**
   * Record a spend unless the serial is already recorded. `spent: true` means this call
   * recorded it and the record is durable; only then may the caller grant anything.
   */
  trySpend(request: SpendRequest): Promise<SpendResult>;
  /** Group commit: each serial decided as by `trySpend`, all in one transaction. */
  trySpendMany(requests: readonly SpendRequest[]): Promise<SpendResult[]>;
  isSpent(serial: Uint8Array): Promise<boolean>;
  /**
   * Delete the rows of days before `beforeDay`; resolves how many. Only for days whose tickets
   * can no longer be redeemed (`oldestKeptDay` in src/tickets/redeemer.ts). Numbers are never
   * reused.
   */
  prune(beforeDay: number): Promise<number>;
  /** Up to `limit` rows with seq > `cursor`, in seq order; the last row's seq is the next cursor. */
  since(cursor: number, limit?: number): Promise<SpentRecord[]>;
  /** The same, only our own redemptions (origin 'local'): what a peer replicates from us. */
  localSince(cursor: number, limit?: number): Promise<SpentRecord[]>;
  /** The highest sequence number ever handed out (0 for a new store). */
  head(): Promise<number>;
  /** The record of one serial, if it is spent. */
  lookup(serial: Uint8Array): Promise<SpentRecord | undefined>;
  count(): Promise<number>;
  close(): Promise<void>;
}

/** A spend as stored: checked, with its origin filled in. Throws RangeError on bad input. */
export function checkSpend(request: SpendRequest): Required<SpendRequest> {
  const { serial, keyId, day, at } = request;
  const origin = request.origin ?? 'local';
  if (serial.length !== 32) throw new RangeError('serial must be 32 bytes');
  if (keyId.length !== 8) throw new RangeError('keyId must be 8 bytes');
  if (!Number.isInteger(day) || day < 0 || day > 0xffffffff) throw new RangeError('bad day');
  if (!Number.isSafeInteger(at) || at < 0) throw new RangeError('at must be unix seconds');
  if (origin.length === 0 || origin.length > MAX_ORIGIN_LENGTH) {
    throw new RangeError('bad origin');
  }
  return { serial, keyId, day, at, origin };
}

/** A page request of `since` / `localSince`. Throws RangeError on bad input. */
export function checkPage(cursor: number, limit: number): void {
  if (!Number.isSafeInteger(cursor) || cursor < 0) throw new RangeError('bad cursor');
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_SINCE_LIMIT) {
    throw new RangeError(`limit must be 1..${MAX_SINCE_LIMIT}`);
  }
}

/** A Buffer over the same bytes (the database drivers take Buffers). */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
