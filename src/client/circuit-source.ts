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

/**
 * The client's end of a circuit as a WorkSource: the relay is the upstream. Jobs, difficulty
 * and extranonce arrive as terms and jobs; submit sends mining.submit. The miner's worker
 * pool and the local Stratum front both consume it like the relay consumes a pool. It
 * reconnects with backoff (each registration is a new session: old jobs are refused
 * locally) and keeps the credit the relay reports.
 */

export interface CircuitSourceOptions {
  url: string;
  mode: 'tickets' | 'donate';
  agent?: string;
  /** SOCKS agent for Tor (socks5h://). */
  httpAgent?: Agent;
  backoff?: { minMs: number; maxMs: number };
  requestTimeoutMs?: number;
  logger?: Logger;
}

/** What only a circuit has, beside the WorkSource events. */
export interface CircuitUpdates {
  /** Credit after an accepted share. */
  credit: [number];
  /** A fresh registration, with its ticket terms (null in donation mode). */
  registered: [RegisterResult];
  /** The relay refused the register (37: full or not ready); the next try is in `retryInMs`. */
  refused: [{ message: string; retryInMs: number }];
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
  private terms: UpstreamTerms | null = null;
  private job: SourceJob | null = null;
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
      try {
        await this.connectOnce();
        this.backoff.reset();
        delayMs = this.backoff.next();
      } catch (err) {
        delayMs = retryDelayMs(err, this.backoff.next());
        this.reportFailure(err, delayMs);
      }
      this.setState('down');
      if (!this.running) break;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, delayMs).unref();
      });
      this.wake = null;
    }
  }

  private reportFailure(err: unknown, retryInMs: number): void {
    if (err instanceof RpcError && err.code === RpcErrorCode.relayFull) {
      this.log.warn({ message: err.message, retryInMs }, 'relay full or not ready');
      this.updates.emit('refused', { message: err.message, retryInMs });
      return;
    }
    this.log.warn({ err: (err as Error).message }, 'relay connection failed');
  }

  /** One circuit: connect, register, follow until it closes. */
  private async connectOnce(): Promise<void> {
    this.setState('connecting');
    // Forget the previous session first, so jobs arriving before the register reply wait
    // for it instead of being taken as the old session's.
    this.terms = null;
    this.job = null;
    const client = await CircuitClient.connect(this.options.url, {
      ...(this.options.httpAgent ? { agent: this.options.httpAgent } : {}),
      timeoutMs: this.options.requestTimeoutMs ?? 30_000,
    });
    this.client = client;
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    this.session += 1;
    const session = this.session;
    const pending: JobParams[] = [];
    // Jobs may arrive right after the register reply: hold them until terms exist.
    client.on('job', (job) => {
      if (!this.terms) pending.push(job);
      else this.onJob(job, session);
    });
    client.on('difficulty', (difficulty) => this.updateTerms({ difficulty }));
    client.on('extranonce', (e) =>
      this.updateTerms({ extranonce1: e.extranonce1, extranonce2Size: e.extranonce2Size }),
    );
    client.on('versionMask', (m) =>
      this.updateTerms({
        versionMask: m.versionMask === null ? null : Number.parseInt(m.versionMask, 16) >>> 0,
      }),
    );
    client.on('relayState', (s) =>
      this.setState(s.upstream === 'live' && this.job ? 'live' : 'connecting'),
    );
    client.on('protocolError', (message) =>
      this.log.warn({ message }, 'relay sent an invalid message'),
    );
    try {
      const result = await client.request('mining.register', {
        agent: this.options.agent ?? 'powbridge-miner',
        mode: this.options.mode,
      });
      this.registration = result;
      this.algorithmSeen = result.algorithm;
      this.updateTerms({
        session,
        extranonce1: result.extranonce1,
        extranonce2Size: result.extranonce2Size,
        difficulty: result.difficulty,
        versionMask:
          result.versionMask === null ? null : Number.parseInt(result.versionMask, 16) >>> 0,
      });
      this.updates.emit('registered', result);
      for (const job of pending.splice(0)) this.onJob(job, session);
    } catch (err) {
      await client.close();
      throw err;
    }
    await closed;
    this.client = null;
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
    this.job = { ...params, session };
    this.emit('job', this.job);
    this.setState('live');
  }

  private setState(state: SourceState): void {
    if (state === this.state) return;
    this.state = state;
    this.emit('state', state);
  }
}
