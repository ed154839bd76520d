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

/**
 * Whether an upstream refusal says the share or block came too late rather than that it was
 * wrong: the job or height was already done (our getblocktemplate source's "stale block: height
 * N is already solved", a pool's "stale"/"job not found", code 21), or the node already had the
 * block or put it on a side chain (submitblock's BIP22 "duplicate…" and "inconclusive"). On an
 * easy chain (regtest) nearly every share is a block and most of them are stale: counted apart,
 * they do not read as a relay that makes bad blocks.
 */
export function isStaleOutcome(outcome: { reason: string; code?: number }): boolean {
  return (
    outcome.code === RpcErrorCode.jobNotFound ||
    /\bstale\b|job not found|^duplicate|^inconclusive/i.test(outcome.reason)
  );
}

/** What became of a block found: the upstream's answer, or not sent (below its difficulty). */
export const BLOCK_RESULTS = ['accepted', 'stale', 'rejected', 'unsubmitted'] as const;
export type BlockResult = (typeof BLOCK_RESULTS)[number];

/** One row of the blocks-found list; a run of stale blocks at one height is one row. */
export interface FoundBlock {
  /** Unix seconds of the first block of the row. */
  at: number;
  /** From the coinbase (BIP34); null when the job's coinbase does not say. */
  height: number | null;
  /** Block hash (display order) of the first block of the row. */
  hash: string;
  result: BlockResult;
  /** The upstream's words when it did not accept the block. */
  reason: string | null;
  /** Blocks in the row: more than 1 only for stale ones at the same height. */
  count: number;
}

/** Rows of the blocks-found list kept: the newest. */
export const RECENT_BLOCKS = 20;

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
  /** stale: of the rejected, those refused for coming too late (isStaleOutcome). */
  forwarded: {
    accepted: number;
    rejected: number;
    stale: number;
    lastRejectReason: string | null;
  };
  /**
   * found = accepted + rejected + found but not submitted (met the network, not the upstream);
   * stale: of the rejected, those too late (isStaleOutcome). recent: newest first.
   */
  blocks: {
    found: number;
    accepted: number;
    rejected: number;
    stale: number;
    recent: FoundBlock[];
  };
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
  private forwardedStale = 0;
  private lastRejectReason: string | null = null;
  private blocksFound = 0;
  private blocksAccepted = 0;
  private blocksRejected = 0;
  private blocksStale = 0;
  /** Newest first, at most RECENT_BLOCKS. */
  private readonly recentBlocks: FoundBlock[] = [];
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
    if (isStaleOutcome(outcome)) this.forwardedStale += 1;
    this.lastRejectReason = outcome.reason.slice(0, MAX_REASON_LENGTH);
  };
  private readonly onBlock: Listener<'block'> = ({ hash, height, outcome }) =>
    this.countBlock(hash, height ?? null, outcome);
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
        stale: this.forwardedStale,
        lastRejectReason: this.lastRejectReason,
      },
      blocks: {
        found: this.blocksFound,
        accepted: this.blocksAccepted,
        rejected: this.blocksRejected,
        stale: this.blocksStale,
        recent: this.recentBlocks.map((block) => ({ ...block })),
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

  private countBlock(hash: string, height: number | null, outcome: SubmitOutcome | null): void {
    this.blocksFound += 1;
    let result: BlockResult = 'unsubmitted';
    let reason: string | null = null;
    if (outcome?.accepted) {
      this.blocksAccepted += 1;
      result = 'accepted';
    } else if (outcome) {
      this.blocksRejected += 1;
      result = isStaleOutcome(outcome) ? 'stale' : 'rejected';
      if (result === 'stale') this.blocksStale += 1;
      reason = outcome.reason.slice(0, MAX_REASON_LENGTH);
    }
    const newest = this.recentBlocks[0];
    if (result === 'stale' && newest?.result === 'stale' && newest.height === height) {
      newest.count += 1;
      return;
    }
    this.recentBlocks.unshift({ at: this.now(), height, hash, result, reason, count: 1 });
    if (this.recentBlocks.length > RECENT_BLOCKS) this.recentBlocks.pop();
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
