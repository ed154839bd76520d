/**
 * Priority grants the relay handed out, by token (docs/design.md §5, §6.3). A grant is what a
 * redeemed ticket turns into: the tunnel looks the token up to put a stream in a paid class
 * until the grant expires. The book holds no serial and no key id, so nothing in it links a
 * grant back to the ticket that paid for it.
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

/** A grant's tickets, as runs of (expiry, count) in increasing expiry. */
interface Paid {
  /** What lookup returns; kept current as tickets lapse. */
  readonly view: GrantEntry;
  readonly runs: { until: number; count: number }[];
}

export class GrantBook {
  private readonly grants = new Map<string, Paid>();

  /** A new grant: `entry.tickets` tickets, each good until `entry.expiresAt`. */
  add(token: string, entry: GrantEntry, now: number): void {
    if (this.grants.has(token)) throw new Error('grant token collision');
    this.dropExpiredFront(now);
    this.grants.set(token, {
      view: { ...entry },
      runs: [{ until: entry.expiresAt, count: entry.tickets }],
    });
  }

  /**
   * One more ticket for a live grant, good until `expiresAt` (a top-up). Returns the grant
   * as it now stands, or undefined when `token` names no live grant (the caller makes a new
   * one). Re-inserted at the back, which keeps the book in expiry order: the new expiry is
   * now + window, the latest of all.
   */
  topUp(token: string, expiresAt: number, now: number): Readonly<GrantEntry> | undefined {
    const paid = this.live(token, now);
    if (paid === undefined) return undefined;
    const last = paid.runs[paid.runs.length - 1];
    if (last !== undefined && last.until === expiresAt) last.count++;
    else paid.runs.push({ until: expiresAt, count: 1 });
    paid.view.tickets++;
    paid.view.expiresAt = Math.max(paid.view.expiresAt, expiresAt);
    this.grants.delete(token);
    this.dropExpiredFront(now);
    this.grants.set(token, paid);
    return paid.view;
  }

  /** The live grant for `token`, or undefined; an expired one is removed on the way. */
  lookup(token: string, now: number): Readonly<GrantEntry> | undefined {
    return this.live(token, now)?.view;
  }

  /** Remove every expired grant (for a periodic timer); returns how many. */
  sweep(now: number): number {
    let removed = 0;
    for (const [token, paid] of this.grants) {
      if (now >= paid.view.expiresAt) {
        this.grants.delete(token);
        removed++;
      }
    }
    return removed;
  }

  get size(): number {
    return this.grants.size;
  }

  /** The grant with its lapsed tickets dropped, or undefined (and removed) once all have. */
  private live(token: string, now: number): Paid | undefined {
    const paid = this.grants.get(token);
    if (paid === undefined) return undefined;
    if (now >= paid.view.expiresAt) {
      this.grants.delete(token);
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
    for (const [token, paid] of this.grants) {
      if (now < paid.view.expiresAt) return;
      this.grants.delete(token);
    }
  }
}
