import type { UpstreamShare } from '../sources/work-source.js';

/** What the miner reports for a status line: counters, per-thread work and the hash rate. */

export interface ThreadStats {
  hashes: number;
  /** The job and extranonce2 the thread is scanning, null between tasks. */
  jobId: string | null;
  extranonce2: string | null;
}

export interface MinerStats {
  /** Hashes (nonces tried) since the miner was created, all threads. */
  hashes: number;
  /** Started, but waiting for the source to be live: no thread hashes. */
  paused: boolean;
  threads: ThreadStats[];
  /** Hashes per second over the sliding window (0 until two samples exist). */
  hashrate: number;
  /** The duty cycle the workers currently aim for, percent. */
  dutyPercent: number;
  /** Nonces the kernels found meeting the share target. */
  found: number;
  accepted: number;
  rejected: number;
  /** Found but not submitted: their job was cleared (clean job or new session) first. */
  stale: number;
}

/** The fate of one found share. */
export interface ShareResult {
  share: UpstreamShare;
  accepted: boolean;
  reason?: string;
  /** True when the share was not submitted because its job was cleared first. */
  stale: boolean;
}

/**
 * Hash rate over a sliding window of (time, total hashes) samples. Time is passed in (ms),
 * so the arithmetic is exact in tests.
 */
export class HashrateMeter {
  private readonly samples: { at: number; hashes: number }[] = [];

  constructor(private readonly windowMs: number) {
    if (!(windowMs > 0)) throw new RangeError(`windowMs: expected > 0, got ${windowMs}`);
  }

  /** Record the total at `at` and return the rate over the window ending there. */
  sample(at: number, hashes: number): number {
    this.samples.push({ at, hashes });
    // Keep one sample at or before the window's start, so the window is always covered.
    while (
      this.samples.length > 2 &&
      (this.samples[1] as { at: number }).at <= at - this.windowMs
    ) {
      this.samples.shift();
    }
    return this.rate();
  }

  rate(): number {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (!first || !last || last.at <= first.at) return 0;
    return ((last.hashes - first.hashes) * 1000) / (last.at - first.at);
  }
}
