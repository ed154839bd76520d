/**
 * A request-rate limit per connection: `perSecond` tokens flow in each second, at most
 * `perSecond × burstSeconds` are saved up, and each request takes one. The bucket starts full,
 * so a fresh connection may send its handshake at once. Time comes from `clock` (milliseconds)
 * so tests can step it by hand.
 */

export interface TokenBucketOptions {
  perSecond: number;
  /** Bucket depth in seconds of the sustained rate: how long a burst may last. */
  burstSeconds: number;
  /** Milliseconds; defaults to Date.now. */
  clock?: () => number;
}

export class TokenBucket {
  private readonly perSecond: number;
  private readonly capacity: number;
  private readonly clock: () => number;
  private tokens: number;
  private last: number;

  constructor(options: TokenBucketOptions) {
    if (!(options.perSecond > 0) || !(options.burstSeconds > 0)) {
      throw new RangeError('token bucket: need perSecond > 0 and burstSeconds > 0');
    }
    this.perSecond = options.perSecond;
    this.capacity = options.perSecond * options.burstSeconds;
    this.clock = options.clock ?? Date.now;
    this.tokens = this.capacity;
    this.last = this.clock();
  }

  /** Spend `count` tokens; false when the sender is over its rate (nothing is spent then). */
  take(count = 1): boolean {
    if (!this.has(count)) return false;
    this.tokens -= count;
    return true;
  }

  /**
   * Whether `count` tokens are there, spending none: for limits that charge only what turns
   * out badly (a peer request whose signature fails), checked before the work is done.
   */
  has(count = 1): boolean {
    const now = this.clock();
    this.tokens = Math.min(
      this.capacity,
      this.tokens + ((now - this.last) / 1000) * this.perSecond,
    );
    this.last = now;
    return this.tokens >= count;
  }
}
