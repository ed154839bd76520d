import type { SubmitOutcome, UpstreamShare } from '../sources/work-source.js';
import type { ShareResult } from './miner-stats.js';

/**
 * Found shares on their way to the source: one queue, submitted one at a time in the order
 * they were found, so the upstream sees them in discovery order whatever the source does
 * inside submit. A share whose job was cleared while it waited (a clean job or a new
 * session: the upstream would refuse it as stale) is reported as stale instead of sent;
 * every share ends in exactly one result, none is dropped unreported.
 */
export class ShareQueue {
  private readonly waiting: UpstreamShare[] = [];
  private busy = false;
  private draining: Promise<void> = Promise.resolve();

  constructor(
    private readonly submit: (share: UpstreamShare) => Promise<SubmitOutcome>,
    private readonly isLive: (share: UpstreamShare) => boolean,
    private readonly onResult: (result: ShareResult) => void,
  ) {}

  get length(): number {
    return this.waiting.length;
  }

  push(share: UpstreamShare): void {
    this.waiting.push(share);
    if (this.busy) return;
    this.busy = true;
    this.draining = this.drain();
  }

  /** Resolves once every share pushed so far has its result. */
  async idle(): Promise<void> {
    while (this.busy) await this.draining;
  }

  /**
   * Wait for the queue to empty, but no longer than `ms`: then report every share still
   * waiting as not submitted and return without waiting for the one in flight (its answer
   * comes, or fails, when the source closes). How a stop stays bounded when shares pile up
   * behind a slow link (each one a round trip through Tor). Returns how many were dropped.
   */
  async settleWithin(ms: number): Promise<number> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<true>((resolve) => {
      timer = setTimeout(() => resolve(true), ms);
    });
    const timedOut = await Promise.race([this.idle().then(() => false as const), late]);
    clearTimeout(timer);
    if (!timedOut) return 0;
    const dropped = this.waiting.splice(0);
    for (const share of dropped) {
      this.onResult({
        share,
        accepted: false,
        reason: 'not submitted: the miner stopped',
        stale: true,
      });
    }
    return dropped.length;
  }

  private async drain(): Promise<void> {
    try {
      for (let share = this.waiting.shift(); share; share = this.waiting.shift()) {
        this.onResult(await this.settle(share));
      }
    } finally {
      // Synchronous with the emptiness check above: a push after it starts a new drain.
      this.busy = false;
    }
  }

  private async settle(share: UpstreamShare): Promise<ShareResult> {
    if (!this.isLive(share)) {
      return { share, accepted: false, reason: 'stale: job cleared before submit', stale: true };
    }
    try {
      const outcome = await this.submit(share);
      return outcome.accepted
        ? { share, accepted: true, stale: false }
        : { share, accepted: false, reason: outcome.reason, stale: false };
    } catch (err) {
      // The source's contract is to answer, not throw; a throw is a bug, still reported.
      return { share, accepted: false, reason: (err as Error).message, stale: false };
    }
  }
}
