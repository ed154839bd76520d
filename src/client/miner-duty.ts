/**
 * The duty cycle the workers aim for (`--cpu`) and its random drift (`--jitter`). A steady
 * hash rate is a fingerprint: the relay sees a client's share rate, and a fixed rate links
 * sessions of one user (Biryukov & Pustogarov suggest randomising it). So every few seconds
 * the duty picks a new value uniformly within cpu × (1 ± jitter), capped at 100%. At
 * `--cpu 100` the band is one-sided: jitter costs some hash rate, the price of the defence.
 */

export interface DutyOptions {
  /** Busy fraction in percent, (0, 100]. */
  cpuPercent: number;
  /** Relative drift in percent, [0, 100). 0 turns the drift off. */
  jitterPercent: number;
  /** Uniform in [0, 1); injected so tests are exact. */
  random: () => number;
}

/** How long one drawn duty holds: a few seconds, itself random so the steps do not tick. */
const HOLD_MIN_MS = 2_000;
const HOLD_MAX_MS = 6_000;
const FLOOR_PERCENT = 1;

export class DutyDrift {
  private readonly low: number;
  private readonly high: number;

  constructor(private readonly options: DutyOptions) {
    const { cpuPercent, jitterPercent } = options;
    if (!Number.isFinite(cpuPercent) || cpuPercent <= 0 || cpuPercent > 100) {
      throw new RangeError(`cpuPercent: expected (0, 100], got ${cpuPercent}`);
    }
    if (!Number.isFinite(jitterPercent) || jitterPercent < 0 || jitterPercent >= 100) {
      throw new RangeError(`jitterPercent: expected [0, 100), got ${jitterPercent}`);
    }
    const spread = cpuPercent * (jitterPercent / 100);
    this.low = Math.max(FLOOR_PERCENT, cpuPercent - spread);
    this.high = Math.min(100, cpuPercent + spread);
  }

  get jittering(): boolean {
    return this.high > this.low;
  }

  /** The band the duty stays in, percent. */
  get band(): { low: number; high: number } {
    return { low: this.low, high: this.high };
  }

  /** The next duty, percent. */
  next(): number {
    return this.low + (this.high - this.low) * this.options.random();
  }

  /** How long the next duty holds, ms. */
  holdMs(): number {
    return HOLD_MIN_MS + (HOLD_MAX_MS - HOLD_MIN_MS) * this.options.random();
  }
}
