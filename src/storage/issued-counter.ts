/**
 * Tickets issued, counted in storage (docs/design.md §6.2, §6.5): one count per (day, key,
 * scheme), added to by every instance that shares the storage, so a family has one count and a
 * restart keeps it. Two engines keep the rows: SQLite beside the spent store for a single relay
 * (src/tickets/issued-store.ts) and PostgreSQL for a family
 * (src/storage/postgres-issued-counts.ts).
 *
 * Counting never holds up issuance: the issuers emit an event per ticket, `IssuedCounter`
 * tallies them in memory and writes the tally in one transaction now and then. A write that
 * fails is reported and its counts are kept for the next one (a lost answer to a COMMIT that
 * did happen may then count a few tickets twice: these are statistics, not money).
 */

/** Short names of the issuing schemes, as `tickets.scheme` spells them. */
export const ISSUING_SCHEMES = ['ao', 'rsa'] as const;
export type IssuingScheme = (typeof ISSUING_SCHEMES)[number];

export interface IssuedCount {
  day: number;
  /** The ticket key's id, hex (8 bytes). */
  keyId: string;
  scheme: IssuingScheme;
  count: number;
}

export interface IssuedCountStorage {
  /** Add every count to its row, in one transaction. */
  add(counts: readonly IssuedCount[]): Promise<void>;
  /** The rows of one day, family-wide, sorted by key then scheme. */
  day(day: number): Promise<IssuedCount[]>;
  close(): Promise<void>;
}

/** A count as stored. Throws RangeError on bad input. */
export function checkIssuedCount(count: IssuedCount): IssuedCount {
  if (!Number.isInteger(count.day) || count.day < 0 || count.day > 0xffffffff) {
    throw new RangeError('bad day');
  }
  if (!/^[0-9a-f]{16}$/.test(count.keyId)) throw new RangeError('keyId must be 8 bytes of hex');
  if (!ISSUING_SCHEMES.includes(count.scheme)) throw new RangeError('bad scheme');
  if (!Number.isSafeInteger(count.count) || count.count < 0) throw new RangeError('bad count');
  return count;
}

export interface IssuedCounterOptions {
  /** How long counts gather before they are written (default 1 s). */
  flushMs?: number;
  /** How often the family's count is read back for the status (default 10 s). */
  refreshMs?: number;
  /** Today's UTC day (the issuers' clock), for the periodic read. */
  today?: () => number;
  /** A write or a read that failed; the counts stay for the next write. */
  onError?: (err: unknown) => void;
}

/** What one family has issued on a day, and how much of it this instance did since start. */
export interface IssuedToday {
  /** This instance's tickets of that day since it started. */
  here: number;
  /** The family's (every instance's, restarts included), as last read; null before a read. */
  family: number | null;
}

/** The issuers' counter: sync to call, written in batches (see the file comment). */
export class IssuedCounter {
  private readonly flushMs: number;
  private readonly refreshMs: number;
  private readonly todayDay: () => number;
  private readonly onError: (err: unknown) => void;
  /** Counts not written yet, by `day:keyId:scheme`. */
  private pending = new Map<string, IssuedCount>();
  /** This instance's counts by day since start. */
  private readonly local = new Map<number, number>();
  private familyRead: { day: number; total: number } | null = null;
  private timer: NodeJS.Timeout | null = null;
  private refresher: NodeJS.Timeout | null = null;
  private writing: Promise<void> | null = null;
  private failing = false;
  private stopped = false;

  constructor(
    private readonly storage: IssuedCountStorage,
    options: IssuedCounterOptions = {},
  ) {
    this.flushMs = options.flushMs ?? 1_000;
    this.onError = options.onError ?? (() => {});
    this.refreshMs = options.refreshMs ?? 10_000;
    this.todayDay = options.today ?? (() => Math.floor(Date.now() / 86_400_000));
  }

  /** Read the family's count now and every `refreshMs` (other instances add to it too). */
  start(): void {
    if (this.refresher || this.stopped) return;
    const read = () => void this.refresh(this.todayDay());
    read();
    this.refresher = setInterval(read, this.refreshMs);
    this.refresher.unref();
  }

  /** One ticket issued (the issuers' `issued` event). */
  count(day: number, keyId: string, scheme: IssuingScheme): void {
    const name = `${day}:${keyId}:${scheme}`;
    const entry = this.pending.get(name) ?? { day, keyId, scheme, count: 0 };
    entry.count += 1;
    this.pending.set(name, entry);
    this.local.set(day, (this.local.get(day) ?? 0) + 1);
    if (this.familyRead?.day === day) this.familyRead.total += 1;
    this.schedule();
  }

  /** Today's counts for the status page (no I/O: the family count is the last one read). */
  today(day: number): IssuedToday {
    return {
      here: this.local.get(day) ?? 0,
      family: this.familyRead?.day === day ? this.familyRead.total : null,
    };
  }

  /** Write what is pending, then read the family's total for `day` (the status's today). */
  async refresh(day: number): Promise<void> {
    await this.flush();
    try {
      const rows = await this.storage.day(day);
      // Counts made while the read was under way are in `pending`, not yet in the rows.
      const unwritten = [...this.pending.values()]
        .filter((c) => c.day === day)
        .reduce((sum, c) => sum + c.count, 0);
      this.familyRead = { day, total: rows.reduce((sum, r) => sum + r.count, 0) + unwritten };
    } catch (err) {
      this.onError(err);
    }
  }

  /** Write the pending counts now; resolves when written (or failed and kept). */
  async flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    while (this.writing) await this.writing;
    if (this.pending.size === 0) return;
    const batch = [...this.pending.values()];
    this.pending = new Map();
    this.writing = this.write(batch);
    try {
      await this.writing;
    } finally {
      this.writing = null;
    }
  }

  /** Stop the timers and write what is pending (the storage's owner closes it). */
  async close(): Promise<void> {
    this.stopped = true;
    if (this.refresher) clearInterval(this.refresher);
    this.refresher = null;
    await this.flush();
  }

  private schedule(): void {
    if (this.timer || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, this.flushMs);
    this.timer.unref();
  }

  private async write(batch: IssuedCount[]): Promise<void> {
    try {
      await this.storage.add(batch);
      this.failing = false;
    } catch (err) {
      // Once per outage, not once per flush; the counts go back for the next write.
      if (!this.failing) this.onError(err);
      this.failing = true;
      for (const c of batch) {
        const name = `${c.day}:${c.keyId}:${c.scheme}`;
        const entry = this.pending.get(name) ?? { ...c, count: 0 };
        entry.count += c.count;
        this.pending.set(name, entry);
      }
      this.schedule();
    }
  }
}
