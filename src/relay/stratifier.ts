import { EventEmitter } from 'node:events';
import { type Logger, silentLogger } from '../log.js';
import { RpcError, RpcErrorCode } from '../protocol/errors.js';
import type {
  SourceJob,
  SourceState,
  SubmitOutcome,
  UpstreamTerms,
  WorkSource,
} from '../sources/work-source.js';
import type { Algorithm } from '../work/algorithm.js';
import { coinbaseHeight } from '../work/coinbase-height.js';
import { sha256d } from '../work/hash.js';
import { reversed, toHex } from '../work/hex.js';
import type { ShareSubmission } from '../work/job.js';
import type { PowHasher } from '../work/pow.js';
import { negotiateMask } from '../work/version.js';
import {
  type ClientChannel,
  type ClientMode,
  type ClientPort,
  ClientSession,
} from './client-session.js';
import {
  type PortShares,
  SlotAllocator,
  type SlotLayout,
  SlotsExhaustedError,
  slotHex,
  slotLayout,
  slotShares,
} from './extranonce-slots.js';
import { JobBook } from './job-book.js';
import { checkShare } from './share-check.js';
import { DEFAULT_VARDIFF, Vardiff, type VardiffConfig } from './vardiff.js';

/**
 * The stratifier (ckpool's name): turns upstream work into client jobs, owns client sessions
 * (slot, difficulty, credit), checks shares, forwards the ones that meet the upstream
 * difficulty. Connectors own sockets and call in; counters, logs and the API listen to the
 * events instead of being woven through this logic.
 */

export interface StratifierOptions {
  source: WorkSource;
  algorithm: Algorithm;
  /** PoW of a header; a worker pool for scrypt so the event loop stays free. */
  hasher: PowHasher;
  vardiff?: Partial<VardiffConfig>;
  /**
   * Difficulty a new client starts at, unless its connector gives another (the Stratum port
   * has its own); clamped to [min, max] and the upstream difficulty.
   */
  initialDifficulty: number;
  /** One unit of credit is one share at this difficulty (docs/design.md §4.4). */
  ticketDifficulty: number;
  /** Circuit clients at once (config `limits.maxClients`). */
  maxClients?: number;
  /**
   * Standard miners on the Stratum port at once (`limits.maxStratumClients`): a count and a
   * share of the extranonce slots of their own, so donors never take a circuit's place.
   */
  maxStratumClients?: number;
  /** Seconds, for vardiff; injectable for tests. */
  now?: () => number;
  vardiffTickMs?: number;
  logger?: Logger;
}

export interface RegisterOutcome {
  algorithm: Algorithm;
  extranonce1: string;
  extranonce2Size: number;
  difficulty: number;
  versionMask: number | null;
}

export interface ShareAccepted {
  accepted: true;
  credit: number;
}

export interface StratifierEvents {
  'client-open': [ClientSession];
  'client-close': [ClientSession];
  /** A share was checked: accepted (code null) or rejected with its protocol code. */
  share: [{ session: ClientSession; difficulty: number; code: number | null; reason?: string }];
  /** A share met the upstream difficulty and was sent; outcome from the pool or node. */
  forwarded: [{ session: ClientSession; outcome: SubmitOutcome }];
  /** A share met the network target; height from its job's coinbase (null: not readable). */
  block: [
    {
      session: ClientSession;
      hash: string;
      height?: number | null;
      outcome: SubmitOutcome | null;
    },
  ];
  job: [{ jobId: string; clean: boolean; clients: number }];
  upstream: [{ state: SourceState; terms: UpstreamTerms | null }];
}

/** Seconds a refused register (37) asks the client to wait: upstream work comes back soon. */
const RETRY_NO_WORK_S = 5;
/** Seconds while full: a slot frees only when some circuit closes. */
const RETRY_FULL_S = 30;

/**
 * A register refused for lack of room (37): the client's port has no place or no slot left.
 * Its own class so the Stratum port can hang up on a full refusal and keep a miner that only
 * came before the upstream's work.
 */
export class RelayFullError extends RpcError {
  override name = 'RelayFullError';
  constructor(message: string) {
    super(RpcErrorCode.relayFull, message, { retryAfter: RETRY_FULL_S });
  }
}

export class Stratifier extends EventEmitter<StratifierEvents> {
  readonly algorithm: Algorithm;
  private readonly source: WorkSource;
  private readonly hasher: PowHasher;
  private readonly vardiffConfig: VardiffConfig;
  private readonly initialDifficulty: number;
  private readonly ticketDifficulty: number;
  /** Configured places per port; `limits` is what the slot layout leaves of them. */
  private readonly maxima: PortShares;
  private limits: PortShares;
  private readonly counts: PortShares = { circuit: 0, stratum: 0 };
  private readonly now: () => number;
  private readonly tickMs: number;
  private readonly log: Logger;

  private readonly book = new JobBook();
  private readonly sessions = new Map<number, ClientSession>();
  private terms: UpstreamTerms | null = null;
  private layout: SlotLayout | null = null;
  private slots: SlotAllocator | null = null;
  private state: SourceState = 'connecting';
  private nextId = 1;
  private timer: NodeJS.Timeout | null = null;
  // Bound once so stop() can detach exactly these listeners from the shared source.
  private readonly handleTerms = (terms: UpstreamTerms) => this.onTerms(terms);
  private readonly handleJob = (job: SourceJob) => this.onJob(job);
  private readonly handleState = (state: SourceState) => this.onState(state);

  constructor(options: StratifierOptions) {
    super();
    this.source = options.source;
    this.algorithm = options.algorithm;
    this.hasher = options.hasher;
    this.vardiffConfig = { ...DEFAULT_VARDIFF, ...options.vardiff };
    this.initialDifficulty = options.initialDifficulty;
    this.ticketDifficulty = options.ticketDifficulty;
    this.maxima = {
      circuit: options.maxClients ?? 10_000,
      stratum: options.maxStratumClients ?? 1_000,
    };
    this.limits = { ...this.maxima };
    this.now = options.now ?? (() => Date.now() / 1000);
    this.tickMs = options.vardiffTickMs ?? 5_000;
    this.log = options.logger ?? silentLogger;
  }

  start(): void {
    this.source.on('terms', this.handleTerms);
    this.source.on('job', this.handleJob);
    this.source.on('state', this.handleState);
    const status = this.source.status();
    if (status.terms) this.onTerms(status.terms);
    this.state = status.state;
    if (status.job && status.state === 'live') this.onJob(status.job);
    this.timer = setInterval(() => this.tick(), this.tickMs);
    this.timer.unref();
  }

  stop(): void {
    this.source.off('terms', this.handleTerms);
    this.source.off('job', this.handleJob);
    this.source.off('state', this.handleState);
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  get clientCount(): number {
    return this.sessions.size;
  }

  /** Clients that came in through one port. */
  clientsOn(port: ClientPort): number {
    return this.counts[port];
  }

  get upstreamState(): SourceState {
    return this.state;
  }

  get upstreamTerms(): UpstreamTerms | null {
    return this.terms;
  }

  get currentJobId(): string | null {
    return this.book.current?.id ?? null;
  }

  /**
   * mining.register: a new session with a slot. Throws RpcError 37 (with `data.retryAfter`)
   * when there is no upstream yet, and RelayFullError (37) when the client's port is at its
   * limit or no slot is left. Call sendCurrentWork once the reply is out.
   * `initialDifficulty` overrides the stratifier's (a Stratum port's own start, or what the
   * miner suggested before subscribing). `port` (default circuit) picks whose places it takes.
   */
  register(
    channel: ClientChannel,
    mode: ClientMode,
    options: { versionMaskRequest?: number; initialDifficulty?: number; port?: ClientPort } = {},
  ): { session: ClientSession; outcome: RegisterOutcome } {
    if (!this.layout || !this.slots || !this.terms) {
      throw new RpcError(RpcErrorCode.relayFull, 'no upstream work yet, retry later', {
        retryAfter: RETRY_NO_WORK_S,
      });
    }
    const port = options.port ?? 'circuit';
    if (this.counts[port] >= this.limits[port]) {
      throw new RelayFullError(
        port === 'stratum' ? 'stratum port is full, retry later' : 'relay is full, retry later',
      );
    }
    let slot: number;
    try {
      slot = this.slots.allocate();
    } catch (err) {
      if (err instanceof SlotsExhaustedError) {
        throw new RelayFullError('no extranonce slot left, retry later');
      }
      throw err;
    }
    const start = options.initialDifficulty ?? this.initialDifficulty;
    const vardiff = new Vardiff(this.vardiffConfig, start, this.now());
    const session = new ClientSession(this.nextId++, mode, channel, vardiff);
    session.slot = slot;
    session.port = port;
    session.extranonce1 = slotHex(slot, this.layout.slotBytes);
    session.extranonce2Size = this.layout.clientExtranonce2Size;
    session.versionMaskRequest = options.versionMaskRequest ?? 0xffffffff;
    session.versionMask = effectiveMask(this.terms.versionMask, session.versionMaskRequest);
    session.vardiff.clamp(this.terms.difficulty);
    session.registered = true;
    this.sessions.set(session.id, session);
    this.counts[port] += 1;
    this.emit('client-open', session);
    return {
      session,
      outcome: {
        algorithm: this.algorithm,
        extranonce1: session.extranonce1,
        extranonce2Size: session.extranonce2Size,
        difficulty: session.difficulty,
        versionMask: session.versionMask,
      },
    };
  }

  /** Send the current job (call after the register reply went out). */
  sendCurrentWork(session: ClientSession): void {
    if (!session.registered) return;
    if (this.state !== 'live') {
      session.channel.sendUpstreamState(false, 'no upstream work: waiting for the pool or node');
      return;
    }
    const job = this.book.current;
    if (job) session.sendJob(job, true, this.book);
  }

  /**
   * Stratum mining.suggest_difficulty: the miner's own difficulty, within [min, max] and the
   * upstream difficulty. `announce`: the miner is working, so tell it (set_difficulty, then
   * the current job under a new id); before that, the difficulty goes out when work starts.
   */
  suggestDifficulty(session: ClientSession, difficulty: number, announce: boolean): void {
    const ceiling = this.terms?.difficulty ?? Number.POSITIVE_INFINITY;
    const next = session.vardiff.suggest(difficulty, this.now(), ceiling);
    if (next !== null && announce) this.applyDifficulty(session, next);
  }

  close(session: ClientSession): void {
    if (!this.sessions.delete(session.id)) return;
    this.counts[session.port] -= 1;
    if (session.slot !== null) this.slots?.release(session.slot);
    session.registered = false;
    this.emit('client-close', session);
  }

  /** mining.submit: checks, credit, vardiff, forwarding. Throws RpcError on rejection. */
  async submit(session: ClientSession, share: ShareSubmission): Promise<ShareAccepted> {
    if (session.registered && this.state !== 'live') {
      this.emit('share', {
        session,
        difficulty: 0,
        code: RpcErrorCode.jobNotFound,
        reason: 'no upstream',
      });
      throw new RpcError(RpcErrorCode.jobNotFound, 'no upstream work: share not accepted');
    }
    const verdict = await checkShare(session, share, this.book, this.algorithm, this.hasher);
    if (!verdict.ok) {
      session.rejected += 1;
      this.emit('share', { session, difficulty: 0, code: verdict.code, reason: verdict.message });
      throw new RpcError(verdict.code, verdict.message);
    }
    session.accepted += 1;
    if (session.mode === 'tickets') session.credit += verdict.difficulty / this.ticketDifficulty;
    this.emit('share', { session, difficulty: verdict.difficulty, code: null });

    if (verdict.meetsUpstream)
      void this.forward(session, share, verdict.job.source, verdict.meetsNetwork, verdict.header);
    else if (verdict.meetsNetwork)
      this.emit('block', {
        session,
        hash: blockId(verdict.header),
        height: coinbaseHeight(verdict.job.source.coinb1),
        outcome: null,
      });

    const ceiling = this.terms?.difficulty ?? Number.POSITIVE_INFINITY;
    const next = session.vardiff.onShare(this.now(), ceiling, verdict.difficulty);
    if (next !== null) this.applyDifficulty(session, next);
    return { accepted: true, credit: session.credit };
  }

  private async forward(
    session: ClientSession,
    share: ShareSubmission,
    job: SourceJob,
    isBlock: boolean,
    header: Uint8Array,
  ): Promise<void> {
    const outcome = await this.source.submit({
      session: job.session,
      jobId: job.jobId,
      extranonce2: session.extranonce1 + share.extranonce2.toLowerCase(),
      ntime: share.ntime.toLowerCase(),
      nonce: share.nonce.toLowerCase(),
      ...(share.versionBits !== undefined ? { versionBits: share.versionBits.toLowerCase() } : {}),
    });
    this.emit('forwarded', { session, outcome });
    if (isBlock) {
      this.emit('block', {
        session,
        hash: blockId(header),
        height: coinbaseHeight(job.coinb1),
        outcome,
      });
    }
    if (!outcome.accepted) this.log.warn({ reason: outcome.reason }, 'upstream rejected a share');
  }

  private applyDifficulty(session: ClientSession, difficulty: number): void {
    session.channel.sendDifficulty(difficulty);
    // Stratum semantics: a difficulty applies to the jobs sent after it, and miners keep
    // mining what they have at the old one. Re-send the current job, under a new id, so it
    // takes effect now instead of at the next upstream notify; not clean, so nothing is lost.
    const job = this.book.current;
    if (job && this.state === 'live') session.sendJob(job, false, this.book);
  }

  private onTerms(terms: UpstreamTerms): void {
    const previous = this.terms;
    this.terms = terms;
    this.emit('upstream', { state: this.state, terms });
    const relaid = !previous || previous.extranonce2Size !== terms.extranonce2Size;
    if (relaid) this.relayout(terms);
    if (previous && previous.versionMask !== terms.versionMask) {
      for (const session of this.sessions.values()) {
        const mask = effectiveMask(terms.versionMask, session.versionMaskRequest);
        if (mask === session.versionMask) continue;
        session.versionMask = mask;
        session.channel.sendVersionMask(mask);
      }
    }
    if (previous && terms.session !== previous.session) this.dropJobs();
    for (const session of this.sessions.values()) {
      const next = session.vardiff.clamp(terms.difficulty);
      if (next !== null) session.channel.sendDifficulty(next);
    }
    // New extranonce on the same upstream session: the current job is still good, but
    // clients forgot theirs with the old extranonce, so send it again as clean work
    // (docs/design.md §4.2). After a new session `current` is null and nothing stale goes out.
    const job = this.book.current;
    if (relaid && previous && job && this.state === 'live') {
      for (const session of this.sessions.values()) session.sendJob(job, true, this.book);
    }
  }

  /** The upstream extranonce2 size changed: new slot layout, tell every client. */
  private relayout(terms: UpstreamTerms): void {
    const layout = slotLayout(terms.extranonce2Size);
    const old = this.layout;
    this.layout = layout;
    if (!layout) {
      this.log.error(
        { extranonce2Size: terms.extranonce2Size },
        'upstream extranonce2 too small to split among clients',
      );
      this.slots = null;
      for (const session of [...this.sessions.values()]) {
        session.channel.close('upstream extranonce2 too small to split among clients');
        this.close(session);
      }
      return;
    }
    if (!this.slots) this.slots = new SlotAllocator(layout.capacity);
    const evicted = new Set(this.slots.resize(layout.capacity));
    this.limits = slotShares(layout.capacity, this.maxima);
    if (!old) return;
    const displaced = this.displaced(evicted);
    for (const session of [...this.sessions.values()]) {
      if (displaced.has(session)) {
        // An evicted slot is gone already: close() must not release it to a newcomer.
        if (session.slot !== null && evicted.has(session.slot)) session.slot = null;
        session.channel.close('no extranonce slot left after an upstream change');
        this.close(session);
        continue;
      }
      session.extranonce1 = slotHex(session.slot ?? 0, layout.slotBytes);
      session.extranonce2Size = layout.clientExtranonce2Size;
      session.forgetJobs();
      session.channel.sendExtranonce(session.extranonce1, session.extranonce2Size);
    }
  }

  /**
   * Sessions that lose their place in a new layout: their slot no longer fits, or their port
   * holds more than its new share (the newest go, so neither port keeps the other's slots).
   */
  private displaced(evicted: ReadonlySet<number>): Set<ClientSession> {
    const out = new Set<ClientSession>();
    const kept: PortShares = { circuit: 0, stratum: 0 };
    // Map order is registration order: the oldest keep their place.
    for (const session of this.sessions.values()) {
      const slotGone = session.slot !== null && evicted.has(session.slot);
      if (slotGone || kept[session.port] >= this.limits[session.port]) out.add(session);
      else kept[session.port] += 1;
    }
    return out;
  }

  private onJob(job: SourceJob): void {
    if (!this.terms || job.session !== this.terms.session) {
      this.log.warn({ session: job.session }, 'job from an unknown upstream session dropped');
      return;
    }
    let booked;
    try {
      booked = this.book.add(job, this.terms);
    } catch (err) {
      // The sources validate jobs already; this is the last line before clients see it.
      this.log.error({ err: (err as Error).message }, 'malformed upstream job dropped');
      return;
    }
    for (const session of this.sessions.values()) {
      session.sendJob(booked, booked.clientJob.clean, this.book);
    }
    this.emit('job', { jobId: booked.id, clean: job.clean, clients: this.sessions.size });
  }

  private onState(state: SourceState): void {
    const wasLive = this.state === 'live';
    this.state = state;
    this.emit('upstream', { state, terms: this.terms });
    if (state === 'live') {
      if (!wasLive) {
        for (const session of this.sessions.values()) {
          session.channel.sendUpstreamState(true, 'upstream is back');
        }
      }
      return;
    }
    if (wasLive) {
      this.dropJobs();
      for (const session of this.sessions.values()) {
        session.channel.sendUpstreamState(false, 'upstream lost: no work until it is back');
      }
    }
  }

  /** No job of the previous upstream session may be mined or forwarded. */
  private dropJobs(): void {
    this.book.clear();
    for (const session of this.sessions.values()) session.forgetJobs();
  }

  private tick(): void {
    const ceiling = this.terms?.difficulty ?? Number.POSITIVE_INFINITY;
    const now = this.now();
    for (const session of this.sessions.values()) {
      const next = session.vardiff.onTick(now, ceiling);
      if (next !== null) this.applyDifficulty(session, next);
    }
  }
}

/** Upstream grant ∩ client request (BIP310); null when nothing may roll. */
function effectiveMask(upstream: number | null, requested: number): number | null {
  if (upstream === null) return null;
  const mask = negotiateMask(upstream, requested);
  return mask === 0 ? null : mask;
}

/** Display order, as explorers and the node show block hashes. */
/**
 * A block's id as nodes and explorers show it: SHA-256d of the header, byte-reversed. Not the
 * proof-of-work hash, which for scrypt is another value a node does not know the block by.
 */
function blockId(header: Uint8Array): string {
  return toHex(reversed(sha256d(header)));
}
