import { z } from 'zod';
import { TokenBucket } from '../lib/token-bucket.js';
import { type Logger, silentLogger } from '../log.js';

/**
 * What the peer API does with requests it cannot authenticate (docs/design.md §7). Anyone can
 * send them, so each must cost next to nothing: a plain 401 (signing an answer to a stranger
 * would be an Ed25519 signature for whoever asks), a counter by reason, and a summary in the
 * log at most once a minute instead of a line each.
 *
 * Two global token buckets bound them. The cheap refusals (headers, sender, clock, nonce) take
 * from one; beyond it the answer is 429 with Retry-After. A failed signature check takes from
 * the other, which is looked at before any signature is checked: a flood of forged signatures
 * under a pinned identity makes the relay verify at most that many a second, and is answered
 * 429 beyond. A signature that verifies costs that bucket nothing, so a pinned peer is slowed
 * only while such a flood lasts, and a flood of garbage never slows it.
 */

/** Why a peer request was refused before it authenticated (`rate_limited`: over the rate, 429). */
export const UNAUTHENTICATED_REASONS = [
  'missing_headers',
  'unknown_peer',
  'stale_timestamp',
  'bad_signature',
  'replay',
  'rate_limited',
] as const;
export type UnauthenticatedReason = (typeof UNAUTHENTICATED_REASONS)[number];

const count = z.number().int().min(0);

/** The `peerApi` section of /v1/status: unauthenticated requests refused since the start. */
export const peerApiStatusSchema = z.strictObject({
  refused: z.strictObject({
    missingHeaders: count,
    unknownPeer: count,
    staleTimestamp: count,
    badSignature: count,
    replay: count,
    rateLimited: count,
  }),
});
export type PeerApiStatus = z.output<typeof peerApiStatusSchema>;

/** What to answer an unauthenticated request: a plain 401, or 429 while over the rate. */
export type PlainRefusal =
  | { status: 401; reason: Exclude<UnauthenticatedReason, 'rate_limited'> }
  | { status: 429; retryAfterSeconds: number };

export interface PeerApiGuardOptions {
  /** Unix seconds. */
  now: () => number;
  logger?: Logger;
  /** Plain 401s a second, and how many seconds of them may come at once (default 20, 5). */
  refusalsPerSecond?: number;
  refusalBurstSeconds?: number;
  /** Failed signature checks a second, and seconds of them at once (default 5, 4). */
  badSignaturesPerSecond?: number;
  badSignatureBurstSeconds?: number;
  /** At most one summary line this often, when the counts moved (default 60). */
  summarySeconds?: number;
}

export class PeerApiGuard {
  private readonly now: () => number;
  private readonly log: Logger;
  private readonly refusals: TokenBucket;
  private readonly badSignatures: TokenBucket;
  private readonly retryAfter: { refusals: number; badSignatures: number };
  private readonly summarySeconds: number;
  private readonly counts = zeroCounts();
  private logged = zeroCounts();
  private lastSummaryAt = -Infinity;
  private readonly timer: NodeJS.Timeout;

  constructor(options: PeerApiGuardOptions) {
    this.now = options.now;
    this.log = options.logger ?? silentLogger;
    const clock = () => this.now() * 1000;
    const refusalsPerSecond = options.refusalsPerSecond ?? 20;
    const badSignaturesPerSecond = options.badSignaturesPerSecond ?? 5;
    this.refusals = new TokenBucket({
      perSecond: refusalsPerSecond,
      burstSeconds: options.refusalBurstSeconds ?? 5,
      clock,
    });
    this.badSignatures = new TokenBucket({
      perSecond: badSignaturesPerSecond,
      burstSeconds: options.badSignatureBurstSeconds ?? 4,
      clock,
    });
    // An empty bucket has a token again after 1/rate seconds; Retry-After is whole seconds.
    this.retryAfter = {
      refusals: Math.max(1, Math.ceil(1 / refusalsPerSecond)),
      badSignatures: Math.max(1, Math.ceil(1 / badSignaturesPerSecond)),
    };
    this.summarySeconds = options.summarySeconds ?? 60;
    // The last minute of a flood that stopped is summed up too; unref: it keeps nothing alive.
    this.timer = setInterval(() => this.summarize(), this.summarySeconds * 1000);
    this.timer.unref();
  }

  /** A cheap check failed (headers, sender, clock, nonce): 401 within the rate, else 429. */
  refuse(reason: Exclude<UnauthenticatedReason, 'rate_limited'>): PlainRefusal {
    if (!this.refusals.take()) return this.overRate(this.retryAfter.refusals);
    this.note(reason);
    return { status: 401, reason };
  }

  /**
   * Whether a signature may be checked now; null if so, else the 429 to send. Asked before the
   * body is read and the signature checked.
   */
  mayVerify(): PlainRefusal | null {
    return this.badSignatures.has() ? null : this.overRate(this.retryAfter.badSignatures);
  }

  /** The signature did not verify: charged to the signature bucket, answered with a plain 401. */
  signatureFailed(): PlainRefusal {
    this.badSignatures.take();
    this.note('bad_signature');
    return { status: 401, reason: 'bad_signature' };
  }

  /** Refusals since the start, by reason. */
  refused(): Readonly<Record<UnauthenticatedReason, number>> {
    return { ...this.counts };
  }

  status(): PeerApiStatus {
    const c = this.counts;
    return {
      refused: {
        missingHeaders: c.missing_headers,
        unknownPeer: c.unknown_peer,
        staleTimestamp: c.stale_timestamp,
        badSignature: c.bad_signature,
        replay: c.replay,
        rateLimited: c.rate_limited,
      },
    };
  }

  /** Stop the summary timer, logging what the last summary did not cover. */
  close(): void {
    clearInterval(this.timer);
    this.summarize(true);
  }

  private overRate(retryAfterSeconds: number): PlainRefusal {
    this.note('rate_limited');
    return { status: 429, retryAfterSeconds };
  }

  private note(reason: UnauthenticatedReason): void {
    this.counts[reason]++;
    this.summarize();
  }

  /** One line with what moved since the last one, at most every `summarySeconds`. */
  private summarize(final = false): void {
    const at = this.now();
    if (!final && at - this.lastSummaryAt < this.summarySeconds) return;
    const moved: Partial<Record<UnauthenticatedReason, number>> = {};
    let total = 0;
    for (const reason of UNAUTHENTICATED_REASONS) {
      const delta = this.counts[reason] - this.logged[reason];
      if (delta > 0) moved[reason] = delta;
      total += delta;
    }
    if (total === 0) return;
    // Counts only: never who sent them, nor what they claimed to be.
    const since = Number.isFinite(this.lastSummaryAt) ? Math.round(at - this.lastSummaryAt) : 0;
    this.log.warn(
      { refused: moved, total, seconds: since },
      'peer API refused unauthenticated requests (counted in powbridge_peer_api_refused_total)',
    );
    this.logged = { ...this.counts };
    this.lastSummaryAt = at;
  }
}

function zeroCounts(): Record<UnauthenticatedReason, number> {
  return {
    missing_headers: 0,
    unknown_peer: 0,
    stale_timestamp: 0,
    bad_signature: 0,
    replay: 0,
    rate_limited: 0,
  };
}
