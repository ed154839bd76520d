/**
 * Capped exponential backoff with "equal jitter": the n-th delay is drawn uniformly from
 * [step/2, step], step = min(maxMs, minMs·2ⁿ). Half of the step is fixed so retries never
 * collapse to zero; the other half is random so many bridges that lost the same pool at the
 * same moment do not reconnect in lockstep. The random source is injectable so tests are exact.
 */

export interface BackoffOptions {
  minMs: number;
  maxMs: number;
  /** Uniform in [0, 1). Defaults to Math.random. */
  random?: () => number;
}

/** The delay before retry number `attempt` (0-based). */
export function backoffDelay(attempt: number, options: BackoffOptions): number {
  const random = options.random ?? Math.random;
  const step = Math.min(options.maxMs, options.minMs * 2 ** Math.min(attempt, 52));
  return Math.round(step / 2 + (random() * step) / 2);
}

export class Backoff {
  private attempt = 0;

  constructor(private readonly options: BackoffOptions) {
    if (!(options.minMs > 0) || !(options.maxMs >= options.minMs)) {
      throw new RangeError('backoff: need 0 < minMs <= maxMs');
    }
  }

  /** The next delay; each call doubles the step until the cap. */
  next(): number {
    return backoffDelay(this.attempt++, this.options);
  }

  /** After a success: the next failure starts again from the minimum. */
  reset(): void {
    this.attempt = 0;
  }
}
