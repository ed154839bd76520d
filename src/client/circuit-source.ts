import { EventEmitter } from 'node:events';
import type { Agent } from 'node:http';
import { type Logger, silentLogger } from '../log.js';
import { RpcError, RpcErrorCode } from '../protocol/errors.js';
import type { JobParams, RegisterResult } from '../protocol/messages.js';
import { Backoff } from '../lib/backoff.js';
import type {
  SourceJob,
  SourceState,
  SourceStatus,
  SubmitOutcome,
  UpstreamShare,
  UpstreamTerms,
  WorkSource,
  WorkSourceEvents,
} from '../sources/work-source.js';
import type { Algorithm } from '../work/algorithm.js';
import { CircuitClient } from './circuit-client.js';
import { judgeFailure, type UnusableRelayError } from './connect-errors.js';

/**
 * The client's end of a circuit as a WorkSource: the relay is the upstream. Jobs, difficulty
 * and extranonce arrive as terms and jobs; submit sends mining.submit. The miner's worker
 * pool and the local Stratum front both consume it like the relay consumes a pool. It
 * reconnects with backoff (each registration is a new session: old jobs are refused
 * locally) and keeps the credit the relay reports. It is `live` only while the relay can use
 * work: registered (and admitted), with a job, and the relay's upstream not down; consumers
 * stop mining otherwise. Why it is not live is `link()` (the status line words it).
 */

export interface CircuitSourceOptions {
  url: string;
  mode: 'tickets' | 'donate';
  agent?: string;
  /** SOCKS agent for Tor (socks5h://). */
  httpAgent?: Agent;
  /** The proxy URL behind `httpAgent`, for error messages only. */
  proxy?: string;
  backoff?: { minMs: number; maxMs: number };
  requestTimeoutMs?: number;
  /**
   * Run after each register, before any of its work is handed out: throw UnusableRelayError
   * to stop for good, any other error to drop the circuit and retry (e.g. the descriptor
   * check of --relay-identity).
   */
  admit?: (registration: RegisterResult) => Promise<void>;
  logger?: Logger;
}

/**
 * Where the circuit stands, for the status line and for deciding whether to mine: only
 * `live` has work the relay will take.
 */
export type CircuitLink =
  | { state: 'connecting' }
  /** Registered; the relay's descriptor is being checked against --relay-identity. */
  | { state: 'checking' }
  /** Registered (and checked), no job yet. */
  | { state: 'waiting' }
  | { state: 'live' }
  /** The circuit is open but the relay has no upstream (relay.state down): paused. */
  | { state: 'no-upstream'; message: string }
  /**
   * No circuit: the next try is at `retryAt` (ms, Date.now clock). `refused`: the relay
   * answered the register with 37 (no upstream work yet, or full), so we are paused, not lost.
   */
  | { state: 'retrying'; retryAt: number; reason: string; refused: boolean }
  | { state: 'stopped'; reason: string | null };

/** What only a circuit has, beside the WorkSource events. */
export interface CircuitUpdates {
  /** Credit after an accepted share. */
  credit: [number];
  /** A fresh registration, with its ticket terms (null in donation mode), once admitted. */
  registered: [RegisterResult];
  /** The relay refused the register (37: full or not ready); the next try is in `retryInMs`. */
  refused: [{ message: string; retryInMs: number }];
  /** The circuit's state changed. */
  link: [CircuitLink];
  /** The relay cannot be mined for (wrong path, not the pinned relay): the source stopped. */
  fatal: [UnusableRelayError];
}

/** The longest wait a relay's `retryAfter` can impose: it cannot park the miner for hours. */
const MAX_RETRY_AFTER_MS = 10 * 60_000;

/**
 * The wait before the next circuit after `failure`: the backoff's delay, or longer when the
 * relay refused the register (37) and asked for more (`data.retryAfter` seconds, capped).
 */
export function retryDelayMs(failure: unknown, backoffMs: number): number {
  if (!(failure instanceof RpcError) || failure.code !== RpcErrorCode.relayFull) return backoffMs;
  const retryAfter = failure.retryAfter;
  if (retryAfter === undefined) return backoffMs;
  return Math.max(backoffMs, Math.min(retryAfter * 1000, MAX_RETRY_AFTER_MS));
}

export class CircuitSource extends EventEmitter<WorkSourceEvents> implements WorkSource {
  readonly updates = new EventEmitter<CircuitUpdates>();
  private client: CircuitClient | null = null;
  private state: SourceState = 'connecting';
  private linkState: CircuitLink = { state: 'connecting' };
  private terms: UpstreamTerms | null = null;
  private job: SourceJob | null = null;
  /** The relay said its upstream is down: no mining until it says live again. */
  private upstreamDown = false;
  /** The latest job that arrived while the upstream was down, handed out on `live`. */
  private held: SourceJob | null = null;
  /** A mining.set_difficulty waiting for the next job. */
  private nextDifficulty: number | null = null;
  private session = 0;
  private running = false;
  private registration: RegisterResult | null = null;
  private currentCredit = 0;
  private readonly backoff: Backoff;
  private readonly log: Logger;
  private wake: (() => void) | null = null;
  private algorithmSeen: Algorithm | null = null;

  constructor(private readonly options: CircuitSourceOptions) {
    super();
    this.backoff = new Backoff(options.backoff ?? { minMs: 1_000, maxMs: 60_000 });
    this.log = options.logger ?? silentLogger;
  }

  get algorithm(): Algorithm {
    if (!this.algorithmSeen) throw new Error('algorithm unknown until registered');
    return this.algorithmSeen;
  }

  get credit(): number {
    return this.currentCredit;
  }

  /** The relay deducted `amount` (a ticket session opened): keep our view in step with it. */
  noteSpent(amount: number): void {
    this.currentCredit = Math.max(0, this.currentCredit - amount);
  }

  get registered(): RegisterResult | null {
    return this.registration;
  }

  /** The open circuit, for ticket requests (null while reconnecting). */
  get circuit(): CircuitClient | null {
    return this.client?.open ? this.client : null;
  }

  /** Where the circuit stands. */
  link(): CircuitLink {
    return this.linkState;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    void this.loop();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.client?.close();
    this.client = null;
    this.setState('down');
    if (this.linkState.state !== 'stopped') this.setLink({ state: 'stopped', reason: null });
  }

  status(): SourceStatus {
    return { state: this.state, upstream: this.options.url, terms: this.terms, job: this.job };
  }

  async submit(share: UpstreamShare): Promise<SubmitOutcome> {
    const client = this.client;
    if (share.session !== this.session || !client?.open) {
      return {
        accepted: false,
        reason: 'stale share: job from an earlier relay session',
        code: RpcErrorCode.jobNotFound,
      };
    }
    try {
      const { credit } = await client.request('mining.submit', {
        jobId: share.jobId,
        extranonce2: share.extranonce2,
        ntime: share.ntime,
        nonce: share.nonce,
        ...(share.versionBits !== undefined ? { versionBits: share.versionBits } : {}),
      });
      this.currentCredit = credit;
      this.updates.emit('credit', credit);
      return { accepted: true };
    } catch (err) {
      if (err instanceof RpcError) return { accepted: false, reason: err.message, code: err.code };
      return { accepted: false, reason: (err as Error).message };
    }
  }

  private async loop(): Promise<void> {
    while (this.running) {
      let delayMs: number;
      let reason: string;
      let refused = false;
      try {
        const closed = await this.connectOnce();
        this.backoff.reset();
        delayMs = this.backoff.next();
        reason = `the relay closed the circuit${closed ? ` (${closed})` : ''}`;
      } catch (err) {
        const connecting = err instanceof ConnectFailure;
        const cause = connecting ? err.cause : err;
        const stage = connecting ? 'connect' : 'circuit';
        const verdict = judgeFailure(this.options.url, cause, stage, this.options.proxy);
        if (verdict.kind === 'fatal') {
          this.halt(verdict.error);
          break;
        }
        delayMs = retryDelayMs(cause, this.backoff.next());
        reason = verdict.reason;
        refused = verdict.kind === 'refused';
        this.reportFailure(cause, reason, delayMs);
      }
      this.setState('down');
      if (!this.running) break;
      this.setLink({ state: 'retrying', retryAt: Date.now() + delayMs, reason, refused });
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, delayMs).unref();
      });
      this.wake = null;
    }
  }

  /** Stop for good: this relay cannot be mined for. */
  private halt(error: UnusableRelayError): void {
    this.running = false;
    this.setState('down');
    this.setLink({ state: 'stopped', reason: error.message });
    this.log.debug({ err: error.message }, 'relay unusable: stopping');
    this.updates.emit('fatal', error);
  }

  private reportFailure(err: unknown, reason: string, retryInMs: number): void {
    // Info, not warn: the miner's command line reports these in plain words already.
    this.log.info({ reason, retryInMs }, 'no circuit to the relay');
    if (err instanceof RpcError && err.code === RpcErrorCode.relayFull) {
      this.updates.emit('refused', { message: err.message, retryInMs });
    }
  }

  /**
   * One circuit: connect, register, have it admitted, follow it until it closes. Returns the
   * relay's close reason.
   */
  private async connectOnce(): Promise<string> {
    this.setLink({ state: 'connecting' });
    this.setState('connecting');
    // Forget the previous session first, so jobs arriving before the register reply wait
    // for it instead of being taken as the old session's.
    this.terms = null;
    this.job = null;
    this.held = null;
    this.nextDifficulty = null;
    this.upstreamDown = false;
    let client: CircuitClient;
    try {
      client = await CircuitClient.connect(this.options.url, {
        ...(this.options.httpAgent ? { agent: this.options.httpAgent } : {}),
        timeoutMs: this.options.requestTimeoutMs ?? 30_000,
      });
    } catch (err) {
      throw new ConnectFailure(err);
    }
    this.client = client;
    const closed = new Promise<string>((resolve) =>
      client.once('close', ({ reason }) => resolve(reason)),
    );
    this.session += 1;
    const session = this.session;
    // Until the register is answered and admitted, what the relay sends waits, in order.
    let early: (() => void)[] | null = [];
    const deliver = (handle: () => void): void => {
      if (early) early.push(handle);
      else handle();
    };
    client.on('job', (job) => deliver(() => this.onJob(job, session)));
    // Like a Stratum miner: a new difficulty applies from the next job on (the relay judges
    // each job at the difficulty in force when it was sent, docs/design.md §4.3, §5).
    client.on('difficulty', (difficulty) => deliver(() => (this.nextDifficulty = difficulty)));
    client.on('extranonce', (e) =>
      deliver(() =>
        this.updateTerms({ extranonce1: e.extranonce1, extranonce2Size: e.extranonce2Size }),
      ),
    );
    client.on('versionMask', (m) =>
      deliver(() =>
        this.updateTerms({
          versionMask: m.versionMask === null ? null : Number.parseInt(m.versionMask, 16) >>> 0,
        }),
      ),
    );
    client.on('relayState', (s) => deliver(() => this.onRelayState(s.upstream, s.message)));
    client.on('protocolError', (message) =>
      this.log.warn({ message }, 'relay sent an invalid message'),
    );
    try {
      const result = await client.request('mining.register', {
        agent: this.options.agent ?? 'powbridge-miner',
        mode: this.options.mode,
      });
      if (this.options.admit) {
        this.setLink({ state: 'checking' });
        await this.options.admit(result);
      }
      this.registration = result;
      this.algorithmSeen = result.algorithm;
      // Credit is the relay's per circuit: a new circuit starts from nothing.
      this.currentCredit = 0;
      this.updateTerms({
        session,
        extranonce1: result.extranonce1,
        extranonce2Size: result.extranonce2Size,
        difficulty: result.difficulty,
        versionMask:
          result.versionMask === null ? null : Number.parseInt(result.versionMask, 16) >>> 0,
      });
      this.setLink({ state: 'waiting' });
      this.updates.emit('registered', result);
      for (const handle of early.splice(0)) handle();
      early = null;
    } catch (err) {
      this.client = null;
      await client.close();
      throw err;
    }
    const reason = await closed;
    this.client = null;
    return reason;
  }

  private updateTerms(change: Partial<UpstreamTerms>): void {
    const base = this.terms ?? {
      session: this.session,
      extranonce1: '',
      extranonce2Size: 0,
      difficulty: 1,
      versionMask: null,
    };
    this.terms = { ...base, ...change, session: this.session };
    this.emit('terms', this.terms);
  }

  private onJob(params: JobParams, session: number): void {
    if (session !== this.session) return;
    const job = { ...params, session };
    if (this.upstreamDown) {
      // The relay dropped every job when its upstream went; this one is mined once it says
      // live (before that it refuses shares), as a fresh start.
      this.held = { ...job, clean: true };
      return;
    }
    this.handOut(job);
    this.goLive();
  }

  /** The job becomes the current one, at the difficulty last set before it. */
  private handOut(job: SourceJob): void {
    if (this.nextDifficulty !== null) {
      this.updateTerms({ difficulty: this.nextDifficulty });
      this.nextDifficulty = null;
    }
    this.job = job;
    this.emit('job', job);
  }

  /** relay.state: pause while the relay has no upstream, resume when it is back. */
  private onRelayState(upstream: 'live' | 'down', message: string): void {
    if (upstream === 'down') {
      this.upstreamDown = true;
      // The relay forgot its jobs: shares of ours would only be refused.
      this.job = null;
      this.held = null;
      this.setState('connecting');
      this.setLink({ state: 'no-upstream', message });
      return;
    }
    this.upstreamDown = false;
    const held = this.held;
    this.held = null;
    if (held) this.handOut(held);
    if (this.job) this.goLive();
    else this.setLink({ state: 'waiting' });
  }

  private goLive(): void {
    this.setLink({ state: 'live' });
    this.setState('live');
  }

  private setLink(link: CircuitLink): void {
    if (JSON.stringify(link) === JSON.stringify(this.linkState)) return;
    this.linkState = link;
    this.updates.emit('link', link);
  }

  private setState(state: SourceState): void {
    if (state === this.state) return;
    this.state = state;
    this.emit('state', state);
  }
}

/** A failure before the circuit opened (the URL, the network, the proxy). */
class ConnectFailure extends Error {
  constructor(override readonly cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause));
  }
}
