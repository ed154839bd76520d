/**
 * Priority grants the relay handed out, by token (docs/design.md §5, §6.3). A grant is what a
 * redeemed ticket turns into: the tunnel looks the token up to put a stream in the paid class
 * until the grant expires. The book holds no serial and no key id, so nothing in it links a
 * grant back to the ticket that paid for it.
 */

export interface GrantEntry {
  /** Unix seconds; the grant is void from this second on. */
  expiresAt: number;
  /** Tickets paid into this grant (more than one moves a circuit to a higher group, later). */
  tickets: number;
}

export class GrantBook {
  private readonly grants = new Map<string, GrantEntry>();

  add(token: string, entry: GrantEntry, now: number): void {
    if (this.grants.has(token)) throw new Error('grant token collision');
    this.dropExpiredFront(now);
    this.grants.set(token, { ...entry });
  }

  /**
   * Replace a grant's entry (a top-up: more tickets, a new expiry). Re-inserted at the back,
   * which keeps the book in expiry order: the new expiry is now + window, the latest of all.
   */
  renew(token: string, entry: GrantEntry, now: number): void {
    this.grants.delete(token);
    this.dropExpiredFront(now);
    this.grants.set(token, { ...entry });
  }

  /** The live grant for `token`, or undefined; an expired one is removed on the way. */
  lookup(token: string, now: number): Readonly<GrantEntry> | undefined {
    const entry = this.grants.get(token);
    if (entry === undefined) return undefined;
    if (now >= entry.expiresAt) {
      this.grants.delete(token);
      return undefined;
    }
    return entry;
  }

  /** Remove every expired grant (for a periodic timer); returns how many. */
  sweep(now: number): number {
    let removed = 0;
    for (const [token, entry] of this.grants) {
      if (now >= entry.expiresAt) {
        this.grants.delete(token);
        removed++;
      }
    }
    return removed;
  }

  get size(): number {
    return this.grants.size;
  }

  /**
   * Grants are added in time order with one window, so the oldest expire first: trimming
   * the front on every add keeps the book bounded without a timer, in amortised O(1).
   */
  private dropExpiredFront(now: number): void {
    for (const [token, entry] of this.grants) {
      if (now < entry.expiresAt) return;
      this.grants.delete(token);
    }
  }
}
