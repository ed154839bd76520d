/**
 * Per-client variable difficulty (docs/design.md §4.4). Pure: the caller passes the time. Retargets
 * after enough shares or on a timer (so an idle client goes down), in powers of two, by a
 * bounded factor per step, within [floor, ceiling] where the ceiling is never above the
 * upstream difficulty.
 */

export interface VardiffConfig {
  /** Seconds between shares the relay aims for. */
  targetShareSeconds: number;
  /** Retarget at least this often (seconds), even without shares. */
  retargetSeconds: number;
  /** Retarget early once this many shares arrived since the last retarget. */
  retargetShares: number;
  /** Largest factor of one step (a power of two, e.g. 4). */
  maxStep: number;
  minDifficulty: number;
  maxDifficulty: number;
}

export const DEFAULT_VARDIFF: VardiffConfig = {
  targetShareSeconds: 15,
  retargetSeconds: 60,
  retargetShares: 8,
  maxStep: 4,
  minDifficulty: 2 ** -16,
  maxDifficulty: 2 ** 32,
};

export class Vardiff {
  private shares = 0;
  private since: number;
  private current: number;

  constructor(
    private readonly config: VardiffConfig,
    initialDifficulty: number,
    nowSeconds: number,
  ) {
    this.since = nowSeconds;
    this.current = initialDifficulty;
  }

  get difficulty(): number {
    return this.current;
  }

  /** Record an accepted share; returns a new difficulty when it is time to change. */
  onShare(nowSeconds: number, ceiling: number): number | null {
    this.shares += 1;
    if (this.shares < this.config.retargetShares) return null;
    return this.retarget(nowSeconds, ceiling);
  }

  /** Timer tick; returns a new difficulty when the retarget interval has passed. */
  onTick(nowSeconds: number, ceiling: number): number | null {
    if (nowSeconds - this.since < this.config.retargetSeconds) return null;
    return this.retarget(nowSeconds, ceiling);
  }

  /** Force a value (e.g. the upstream difficulty fell below the current one). */
  clamp(ceiling: number): number | null {
    const next = this.bounded(this.current, ceiling);
    if (next === this.current) return null;
    this.current = next;
    return next;
  }

  private retarget(nowSeconds: number, ceiling: number): number | null {
    const elapsed = Math.max(nowSeconds - this.since, 1e-3);
    const { targetShareSeconds, maxStep } = this.config;
    // Shares per second observed vs wanted; no shares at all means "too hard": step down.
    const factor = this.shares === 0 ? 1 / maxStep : (this.shares * targetShareSeconds) / elapsed;
    const stepped = Math.min(Math.max(factor, 1 / maxStep), maxStep);
    const wanted = 2 ** Math.round(Math.log2(this.current * stepped));
    this.shares = 0;
    this.since = nowSeconds;
    const next = this.bounded(wanted, ceiling);
    if (next === this.current) return null;
    this.current = next;
    return next;
  }

  private bounded(value: number, ceiling: number): number {
    // The ceiling wins over the floor: a client never mines above the upstream difficulty.
    const max = Math.min(this.config.maxDifficulty, ceiling);
    return Math.min(Math.max(this.config.minDifficulty, value), max);
  }
}
