import { createHash } from 'node:crypto';

/**
 * Priority grants the relay handed out (docs/design.md §5, §6.3). A grant is what a redeemed
 * ticket turns into: the tunnel looks it up to put a stream in a paid class until the grant
 * expires. The book holds no serial and no key id, so nothing in it links a grant back to the
 * ticket that paid for it.
 *
 * Grants are kept by id, the SHA-256 of the token, never by the token itself: the same ids are
 * what the grant store writes to disk (src/tickets/grant-store.ts), so neither a copied
 * database nor a heap dump hands out live tokens. The tunnel hashes a token once, when a
 * stream opens, and then looks its grant up by id.
 *
 * Each ticket paid into a grant buys one window from the moment it was redeemed, so the
 * ticket count that selects the group (docs/design.md §8) is the tickets paid in the current
 * window: a top-up raises it for a window, after which it falls back. Keeping a grant alive
 * with one ticket per window never adds up to a higher group.
 */

export interface GrantEntry {
  /** Unix seconds; the grant is void from this second on (its latest ticket's expiry). */
  expiresAt: number;
  /** Tickets paid into this grant whose window has not ended. */
  tickets: number;
}

/** Tickets paid into a grant that stop counting at the same second. */
export interface GrantRun {
  /** Unix seconds: these tickets count until then. */
  until: number;
  count: number;
}

/** A grant's id: SHA-256 of its token, base64url (43 characters). */
export function grantId(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('base64url');
}

/** A grant's tickets, as runs in increasing expiry. */
interface Paid {
  /** What lookup returns; kept current as tickets lapse. */
  readonly view: GrantEntry;
  readonly runs: GrantRun[];
}

export class GrantBook {
  private readonly grants = new Map<string, Paid>();

  /** A new grant: `entry.tickets` tickets, each good until `entry.expiresAt`. */
  add(token: string, entry: GrantEntry, now: number): void {
    const id = grantId(token);
    if (this.grants.has(id)) throw new Error('grant token collision');
    this.dropExpiredFront(now);
    this.grants.set(id, {
      view: { ...entry },
      runs: [{ until: entry.expiresAt, count: entry.tickets }],
    });
  }

  /**
   * A grant read back from the grant store at start: its tickets by expiry, lapsed ones
   * dropped. Restore grants in increasing expiry, before any new one is added, so the book
   * stays in expiry order (see dropExpiredFront). Returns false if nothing of it still counts.
   */
  restore(id: string, runs: readonly GrantRun[], now: number): boolean {
    if (this.grants.has(id)) throw new Error('grant restored twice');
    const live = runs
      .filter((run) => run.until > now && run.count > 0)
      .map((run) => ({ ...run }))
      .sort((a, b) => a.until - b.until);
    const last = live[live.length - 1];
    if (last === undefined) return false;
    const tickets = live.reduce((sum, run) => sum + run.count, 0);
    this.grants.set(id, { view: { expiresAt: last.until, tickets }, runs: live });
    return true;
  }

  /**
   * A grant as the family's storage holds it (every ticket any instance paid into it),
   * replacing what this book knew of it: how an instance learns of a grant another instance
   * made or topped up. Adopted late, it may sit out of expiry order until the periodic sweep,
   * which costs memory for a while, never a wrong answer (lookups check expiry). Returns false
   * if nothing of it still counts.
   */
  adopt(id: string, runs: readonly GrantRun[], now: number): boolean {
    this.grants.delete(id);
    return this.restore(id, runs, now);
  }

  /**
   * One more ticket for a live grant, good until `expiresAt` (a top-up). Returns the grant
   * as it now stands, or undefined when `token` names no live grant (the caller makes a new
   * one). Re-inserted at the back, which keeps the book in expiry order: the new expiry is
   * now + window, the latest of all.
   */
  topUp(token: string, expiresAt: number, now: number): Readonly<GrantEntry> | undefined {
    const id = grantId(token);
    const paid = this.live(id, now);
    if (paid === undefined) return undefined;
    const last = paid.runs[paid.runs.length - 1];
    if (last !== undefined && last.until === expiresAt) last.count++;
    else paid.runs.push({ until: expiresAt, count: 1 });
    paid.view.tickets++;
    paid.view.expiresAt = Math.max(paid.view.expiresAt, expiresAt);
    this.grants.delete(id);
    this.dropExpiredFront(now);
    this.grants.set(id, paid);
    return paid.view;
  }

  /** The live grant for `token`, or undefined; an expired one is removed on the way. */
  lookup(token: string, now: number): Readonly<GrantEntry> | undefined {
    return this.live(grantId(token), now)?.view;
  }

  /** The same by grant id (`grantId(token)`), for a caller that hashed the token once. */
  find(id: string, now: number): Readonly<GrantEntry> | undefined {
    return this.live(id, now)?.view;
  }

  /** Remove every expired grant (for a periodic timer); returns how many. */
  sweep(now: number): number {
    let removed = 0;
    for (const [id, paid] of this.grants) {
      if (now >= paid.view.expiresAt) {
        this.grants.delete(id);
        removed++;
      }
    }
    return removed;
  }

  get size(): number {
    return this.grants.size;
  }

  /** The grant with its lapsed tickets dropped, or undefined (and removed) once all have. */
  private live(id: string, now: number): Paid | undefined {
    const paid = this.grants.get(id);
    if (paid === undefined) return undefined;
    if (now >= paid.view.expiresAt) {
      this.grants.delete(id);
      return undefined;
    }
    // Per chunk this is one comparison: runs lapse rarely, and only from the front.
    for (let run = paid.runs[0]; run !== undefined && now >= run.until; run = paid.runs[0]) {
      paid.view.tickets -= run.count;
      paid.runs.shift();
    }
    return paid;
  }

  /**
   * Grants are added in time order with one window, so the oldest expire first: trimming
   * the front on every add keeps the book bounded without a timer, in amortised O(1).
   */
  private dropExpiredFront(now: number): void {
    for (const [id, paid] of this.grants) {
      if (now < paid.view.expiresAt) return;
      this.grants.delete(id);
    }
  }
}
