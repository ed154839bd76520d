import { TokenBucket } from './token-bucket.js';

/**
 * One budget for expensive work shared by every connection (docs/design.md §10.1): a token
 * bucket of `perSecond` units, `burstSeconds` of them saved up. Per-connection rate limits do
 * not bound the total when connections are free to open, so whatever costs real CPU (a ticket's
 * signature check) takes a unit from here first, after the cheap checks, and is refused at once
 * when none is left. Time comes from `clock` (milliseconds) so tests can step it by hand.
 */

export interface WorkBudgetOptions {
  perSecond: number;
  /** How long a burst at full speed may last; default 1 s. */
  burstSeconds?: number;
  /** Milliseconds; defaults to Date.now. */
  clock?: () => number;
}

export type BudgetAnswer = { granted: true } | { granted: false; retryAfterSeconds: number };

/** What a caller of expensive work needs: a unit, or how long to tell its client to wait. */
export interface ExpensiveWorkBudget {
  take(): BudgetAnswer;
}

export class WorkBudget implements ExpensiveWorkBudget {
  private readonly bucket: TokenBucket;
  private readonly retryAfterSeconds: number;

  constructor(options: WorkBudgetOptions) {
    this.bucket = new TokenBucket({
      perSecond: options.perSecond,
      burstSeconds: options.burstSeconds ?? 1,
      ...(options.clock ? { clock: options.clock } : {}),
    });
    // An empty bucket has a unit again within 1/perSecond seconds; clients get whole seconds.
    this.retryAfterSeconds = Math.max(1, Math.ceil(1 / options.perSecond));
  }

  take(): BudgetAnswer {
    return this.bucket.take()
      ? { granted: true }
      : { granted: false, retryAfterSeconds: this.retryAfterSeconds };
  }
}

/** No limit: tests and tools that redeem without a relay around them. */
export const unlimitedBudget: ExpensiveWorkBudget = { take: () => ({ granted: true }) };
