/**
 * Per-client variable difficulty (docs/design.md §4.4). Pure: the caller passes the time.
 * Retargets after enough shares, early when a few shares already show a client far faster
 * than the target, or on a timer (so an idle client goes down); in powers of two, by a
 * bounded factor per step, within [floor, ceiling] where the ceiling is never above the
 * upstream difficulty.
 *
 * The rate is measured in work (the sum of the accepted shares' difficulties per second), not
 * in share count: right after a retarget a miner still sends shares of its older jobs at the
 * older difficulty, and counting them as shares of the new one would overshoot.
 */

export interface VardiffConfig {
  /** Seconds between shares the relay aims for. */
  targetShareSeconds: number;
  /** Retarget at least this often (seconds), even without shares. */
  retargetSeconds: number;
  /** Retarget once this many shares arrived since the last retarget. */
  retargetShares: number;
  /**
   * Retarget early once this many shares arrived and their work implies at least
   * `fastFactor` times the target rate: a fast miner gets there in seconds, not minutes.
   */
  fastShares: number;
  fastFactor: number;
  /** Largest factor of one step (a power of two, e.g. 4). */
  maxStep: number;
  minDifficulty: number;
  maxDifficulty: number;
}

export const DEFAULT_VARDIFF: VardiffConfig = {
  targetShareSeconds: 15,
  retargetSeconds: 60,
  retargetShares: 8,
  // Four shares implying ≥ 16× the target rate: a client at its right difficulty shows that
  // about once in 8,000 windows (Poisson), while a miner 100× too fast shows it in 4 shares.
  fastShares: 4,
  fastFactor: 16,
  maxStep: 4,
  minDifficulty: 2 ** -16,
  maxDifficulty: 2 ** 32,
};

export class Vardiff {
  private shares = 0;
  /** Sum of the accepted shares' difficulties since the last retarget. */
  private work = 0;
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

  /**
   * Record an accepted share credited at `shareDifficulty` (the difficulty its job was sent
   * with); returns a new difficulty when it is time to change.
   */
  onShare(nowSeconds: number, ceiling: number, shareDifficulty = this.current): number | null {
    this.shares += 1;
    this.work += shareDifficulty;
    const { retargetShares, fastShares, fastFactor } = this.config;
    const due =
      this.shares >= retargetShares ||
      (this.shares >= fastShares && this.factor(nowSeconds) >= fastFactor);
    return due ? this.retarget(nowSeconds, ceiling) : null;
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

  /**
   * The miner asked for a difficulty (Stratum mining.suggest_difficulty): take it within
   * [floor, ceiling] and measure from here. Returns the new difficulty, or null if unchanged.
   */
  suggest(difficulty: number, nowSeconds: number, ceiling: number): number | null {
    const next = this.bounded(difficulty, ceiling);
    this.restart(nowSeconds);
    if (next === this.current) return null;
    this.current = next;
    return next;
  }

  /** Wanted difficulty ÷ current, from the work since the last retarget. */
  private factor(nowSeconds: number): number {
    const elapsed = Math.max(nowSeconds - this.since, 1e-3);
    return (this.work * this.config.targetShareSeconds) / (elapsed * this.current);
  }

  private retarget(nowSeconds: number, ceiling: number): number | null {
    const { maxStep } = this.config;
    // No shares at all means "too hard": step down.
    const factor = this.shares === 0 ? 1 / maxStep : this.factor(nowSeconds);
    const stepped = Math.min(Math.max(factor, 1 / maxStep), maxStep);
    const wanted = 2 ** Math.round(Math.log2(this.current * stepped));
    this.restart(nowSeconds);
    const next = this.bounded(wanted, ceiling);
    if (next === this.current) return null;
    this.current = next;
    return next;
  }

  private restart(nowSeconds: number): void {
    this.shares = 0;
    this.work = 0;
    this.since = nowSeconds;
  }

  private bounded(value: number, ceiling: number): number {
    // The ceiling wins over the floor: a client never mines above the upstream difficulty.
    const max = Math.min(this.config.maxDifficulty, ceiling);
    return Math.min(Math.max(this.config.minDifficulty, value), max);
  }
}
