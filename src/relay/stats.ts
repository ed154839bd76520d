import { RpcErrorCode } from '../protocol/errors.js';
import type { SourceState, SubmitOutcome, UpstreamTerms } from '../sources/work-source.js';
import type { Algorithm } from '../work/algorithm.js';
import { DIFF1_TARGET } from '../work/target.js';
import type { ClientPort } from './client-session.js';
import type { StratifierEvents } from './stratifier.js';
import { STRATUM_DROP_REASONS, type StratumDropReason } from './stratum-miner-limits.js';

/**
 * Relay counters kept by listening to the stratifier's events (xmrig-proxy's split: the hot
 * path emits, stats listen), so the status API and the metrics read one set of numbers. Pure
 * apart from the injected clock; nothing here identifies a client.
 */

/** Labels of rejected shares; a fixed set so metrics never grow a label per message. */
export const SHARE_REJECT_REASONS = [
  'other',
  'stale',
  'duplicate',
  'low-difficulty',
  'unauthorized',
  'not-registered',
] as const;
export type ShareRejectReason = (typeof SHARE_REJECT_REASONS)[number];

const REASON_BY_CODE: ReadonlyMap<number, ShareRejectReason> = new Map([
  [RpcErrorCode.shareOther, 'other'],
  // 21 covers both a job that is gone and "no upstream work": either way the work was stale.
  [RpcErrorCode.jobNotFound, 'stale'],
  [RpcErrorCode.duplicateShare, 'duplicate'],
  [RpcErrorCode.lowDifficulty, 'low-difficulty'],
  [RpcErrorCode.unauthorized, 'unauthorized'],
  [RpcErrorCode.notRegistered, 'not-registered'],
]);

/** Stable label of a share error code; codes outside 20–25 count as "other". */
export function shareRejectReason(code: number): ShareRejectReason {
  return REASON_BY_CODE.get(code) ?? 'other';
}

/** Expected hashes per share of difficulty 1: 2^256 / diff-1 target (≈2^32 sha256d, ≈2^16 scrypt). */
export function hashesPerDifficulty(algorithm: Algorithm): number {
  return 2 ** 256 / Number(DIFF1_TARGET[algorithm]);
}

type Listener<K extends keyof StratifierEvents> = (...args: StratifierEvents[K]) => void;

/** What RelayStats needs from the stratifier; a Stratifier fits, and so does a test double. */
export interface StatsSubject {
  readonly algorithm: Algorithm;
  readonly clientCount: number;
  readonly upstreamState: SourceState;
  readonly upstreamTerms: UpstreamTerms | null;
  /** Clients per port now; without it the per-port counts start at zero. */
  clientsOn?(port: ClientPort): number;
  on<K extends keyof StratifierEvents>(event: K, listener: Listener<K>): unknown;
  off<K extends keyof StratifierEvents>(event: K, listener: Listener<K>): unknown;
}

/** What RelayStats needs from the Stratum port: its drops (a StratumConnector fits). */
export interface StratumDropSubject {
  on(event: 'drop', listener: (reason: StratumDropReason) => void): unknown;
  off(event: 'drop', listener: (reason: StratumDropReason) => void): unknown;
}

export interface RelayStatsOptions {
  /** Unix time in seconds; injectable so tests are exact. */
  now?: () => number;
  /** Sliding window of the hash-rate estimate, seconds. */
  hashrateWindowSeconds?: number;
}

export interface RelayStatsSnapshot {
  clients: number;
  shares: {
    accepted: number;
    /** Σ difficulty of accepted shares (the client difficulty each was credited at). */
    acceptedDifficulty: number;
    rejected: Record<ShareRejectReason, number>;
  };
  forwarded: { accepted: number; rejected: number; lastRejectReason: string | null };
  /** found = accepted + rejected + found but not submitted (met the network, not the upstream). */
  blocks: { found: number; accepted: number; rejected: number };
  jobs: number;
  upstream: {
    state: SourceState;
    /** Unix seconds of the last state change (or of attach, when nothing changed since). */
    since: number;
    difficulty: number | null;
    extranonce2Size: number | null;
  };
  hashrate: { hps: number; windowSeconds: number };
  /** Present once a Stratum port is attached: its miners now, and connections it let go. */
  stratum?: { clients: number; dropped: Record<StratumDropReason, number> };
}

export const DEFAULT_HASHRATE_WINDOW_SECONDS = 300;
/** Upstream reject texts come from the pool: cap what we keep and show. */
const MAX_REASON_LENGTH = 200;

/** Accepted difficulty per whole second; bounded memory whatever the share rate. */
interface Bucket {
  second: number;
  difficulty: number;
}

export class RelayStats {
  private readonly now: () => number;
  private readonly windowSeconds: number;
  private subject: StatsSubject | null = null;
  private hashesPerDiff = 0;
  private observedSince = 0;
  private readonly buckets: Bucket[] = [];

  private clients = 0;
  private stratumClients = 0;
  private stratumPort: StratumDropSubject | null = null;
  private stratumWatched = false;
  private readonly stratumDropped = emptyDrops();
  private sharesAccepted = 0;
  private acceptedDifficulty = 0;
  private readonly rejected = emptyRejects();
  private forwardedAccepted = 0;
  private forwardedRejected = 0;
  private lastRejectReason: string | null = null;
  private blocksFound = 0;
  private blocksAccepted = 0;
  private blocksRejected = 0;
  private jobs = 0;
  private upstreamState: SourceState = 'connecting';
  private upstreamSince = 0;
  private terms: UpstreamTerms | null = null;

  // Bound once so detach() removes exactly these listeners.
  private readonly onOpen: Listener<'client-open'> = (session) => {
    this.clients += 1;
    if (session.port === 'stratum') this.stratumClients += 1;
  };
  private readonly onClose: Listener<'client-close'> = (session) => {
    this.clients = Math.max(0, this.clients - 1);
    if (session.port === 'stratum') this.stratumClients = Math.max(0, this.stratumClients - 1);
  };
  private readonly onStratumDrop = (reason: StratumDropReason): void => {
    this.stratumDropped[reason] += 1;
  };
  private readonly onShare: Listener<'share'> = ({ difficulty, code }) => {
    if (code === null) this.accept(difficulty);
    else this.rejected[shareRejectReason(code)] += 1;
  };
  private readonly onForwarded: Listener<'forwarded'> = ({ outcome }) => {
    if (outcome.accepted) {
      this.forwardedAccepted += 1;
      return;
    }
    this.forwardedRejected += 1;
    this.lastRejectReason = outcome.reason.slice(0, MAX_REASON_LENGTH);
  };
  private readonly onBlock: Listener<'block'> = ({ outcome }) => this.countBlock(outcome);
  private readonly onJob: Listener<'job'> = () => {
    this.jobs += 1;
  };
  private readonly onUpstream: Listener<'upstream'> = ({ state, terms }) => {
    // The event also fires on new terms with an unchanged state: keep "since" meaningful.
    if (state !== this.upstreamState) this.upstreamSince = this.now();
    this.upstreamState = state;
    this.terms = terms;
  };

  constructor(options: RelayStatsOptions = {}) {
    this.now = options.now ?? (() => Date.now() / 1000);
    this.windowSeconds = options.hashrateWindowSeconds ?? DEFAULT_HASHRATE_WINDOW_SECONDS;
    if (!(this.windowSeconds >= 1) || !Number.isFinite(this.windowSeconds)) {
      throw new RangeError('hashrateWindowSeconds must be a finite number >= 1');
    }
  }

  /** Start counting a stratifier's events; state now (clients, upstream) is read from it. */
  attach(subject: StatsSubject): void {
    if (this.subject) throw new Error('RelayStats is already attached');
    this.subject = subject;
    this.hashesPerDiff = hashesPerDifficulty(subject.algorithm);
    const now = this.now();
    this.observedSince = now;
    this.upstreamSince = now;
    this.upstreamState = subject.upstreamState;
    this.terms = subject.upstreamTerms;
    this.clients = subject.clientCount;
    this.stratumClients = subject.clientsOn?.('stratum') ?? 0;
    subject.on('client-open', this.onOpen);
    subject.on('client-close', this.onClose);
    subject.on('share', this.onShare);
    subject.on('forwarded', this.onForwarded);
    subject.on('block', this.onBlock);
    subject.on('job', this.onJob);
    subject.on('upstream', this.onUpstream);
  }

  /** Count the Stratum port's drops too; the snapshot gets its `stratum` section. */
  attachStratum(port: StratumDropSubject): void {
    if (this.stratumPort) throw new Error('RelayStats already counts a Stratum port');
    this.stratumPort = port;
    this.stratumWatched = true;
    port.on('drop', this.onStratumDrop);
  }

  /** Stop counting; the totals so far stay readable. */
  detach(): void {
    this.stratumPort?.off('drop', this.onStratumDrop);
    this.stratumPort = null;
    const subject = this.subject;
    if (!subject) return;
    subject.off('client-open', this.onOpen);
    subject.off('client-close', this.onClose);
    subject.off('share', this.onShare);
    subject.off('forwarded', this.onForwarded);
    subject.off('block', this.onBlock);
    subject.off('job', this.onJob);
    subject.off('upstream', this.onUpstream);
    this.subject = null;
  }

  /**
   * Hashes per second implied by the accepted share difficulty in the last window: each share
   * of difficulty d stands for d × hashesPerDifficulty hashes on average. Over the time
   * observed when that is shorter than the window (at least one second, the bucket size).
   */
  hashrate(): number {
    const now = this.now();
    this.prune(now);
    let difficulty = 0;
    for (const bucket of this.buckets) difficulty += bucket.difficulty;
    const span = Math.min(this.windowSeconds, Math.max(1, now - this.observedSince));
    return (difficulty * this.hashesPerDiff) / span;
  }

  snapshot(): RelayStatsSnapshot {
    return {
      clients: this.clients,
      shares: {
        accepted: this.sharesAccepted,
        acceptedDifficulty: this.acceptedDifficulty,
        rejected: { ...this.rejected },
      },
      forwarded: {
        accepted: this.forwardedAccepted,
        rejected: this.forwardedRejected,
        lastRejectReason: this.lastRejectReason,
      },
      blocks: {
        found: this.blocksFound,
        accepted: this.blocksAccepted,
        rejected: this.blocksRejected,
      },
      jobs: this.jobs,
      upstream: {
        state: this.upstreamState,
        since: this.upstreamSince,
        difficulty: this.terms?.difficulty ?? null,
        extranonce2Size: this.terms?.extranonce2Size ?? null,
      },
      hashrate: { hps: this.hashrate(), windowSeconds: this.windowSeconds },
      ...(this.stratumWatched
        ? { stratum: { clients: this.stratumClients, dropped: { ...this.stratumDropped } } }
        : {}),
    };
  }

  private accept(difficulty: number): void {
    this.sharesAccepted += 1;
    this.acceptedDifficulty += difficulty;
    const now = this.now();
    const second = Math.floor(now);
    const last = this.buckets.at(-1);
    if (last && last.second === second) last.difficulty += difficulty;
    else this.buckets.push({ second, difficulty });
    this.prune(now);
  }

  /** The window is (now − window, now]; buckets are dropped whole. */
  private prune(now: number): void {
    const oldest = now - this.windowSeconds;
    for (let first = this.buckets[0]; first && first.second <= oldest; first = this.buckets[0]) {
      this.buckets.shift();
    }
  }

  private countBlock(outcome: SubmitOutcome | null): void {
    this.blocksFound += 1;
    if (outcome === null) return;
    if (outcome.accepted) this.blocksAccepted += 1;
    else this.blocksRejected += 1;
  }
}

function emptyDrops(): Record<StratumDropReason, number> {
  const counts = {} as Record<StratumDropReason, number>;
  for (const reason of STRATUM_DROP_REASONS) counts[reason] = 0;
  return counts;
}

function emptyRejects(): Record<ShareRejectReason, number> {
  const counts = {} as Record<ShareRejectReason, number>;
  for (const reason of SHARE_REJECT_REASONS) counts[reason] = 0;
  return counts;
}
