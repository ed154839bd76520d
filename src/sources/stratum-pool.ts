import { EventEmitter } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import { z } from 'zod';
import { type Logger, silentLogger } from '../log.js';
import type { ReconnectParams } from '../stratum/index.js';
import { ALGORITHMS, type Algorithm } from '../work/algorithm.js';
import { Backoff } from '../lib/backoff.js';
import type { TlsOptions } from './stratum-connection.js';
import { parseStratumUrl, sameHost, type StratumEndpoint, withPort } from './stratum-endpoint.js';
import { SessionError, UpstreamSession } from './stratum-session.js';
import type {
  SourceState,
  SourceStatus,
  SubmitOutcome,
  UpstreamShare,
  WorkSource,
  WorkSourceEvents,
} from './work-source.js';

/**
 * The upstream pool client (docs/design.md §3.1): a WorkSource over an ordered list of Stratum V1
 * pools. The first pool that completes subscribe + authorize becomes the upstream. When it
 * drops, the list is tried again from the top after a short backoff (a pool that stopped
 * answering is tried last, since it would likely hang the next handshake too); while no pool
 * is live, rounds repeat with a capped exponential backoff with jitter, capped at a few
 * seconds so mining resumes soon after a pool is back. While mining on a lower pool, the
 * primary is probed every `primaryRetryMs` and taken back as soon as it completes its
 * handshake. Every switch starts a new upstream session number, so shares for jobs of the
 * previous session are refused here instead of forwarded.
 *
 * Event order when a session goes live: `terms`, then the current `job` (if the pool already
 * sent one; the first job of a session is always marked clean), then `state: live`.
 */

export interface StratumPoolEntry {
  url: string;
  user: string;
  password: string;
  tls?: TlsOptions;
}

export interface StratumPoolOptions {
  /** In order of preference; the first is the primary. */
  pools: StratumPoolEntry[];
  algorithm?: Algorithm;
  /** Sent in mining.subscribe and as the answer to client.get_version. */
  agent?: string;
  /** Connect, handshake and submit answer timeout. Default 10 s. */
  requestTimeoutMs?: number;
  /** Delay between rounds through the pool list. Default 0.5 s doubling to 4 s. */
  backoff?: { minMs?: number; maxMs?: number };
  /** A live pool that sends no line for this long is given up on. Default 120 s. */
  silenceTimeoutMs?: number;
  /** How often a lower pool's user checks whether the primary is back. Default 60 s. */
  primaryRetryMs?: number;
  /** BIP310 request sent in mining.configure; null disables version rolling. */
  versionRolling?: { mask: number; minBitCount?: number } | null;
  /** Longest client.reconnect wait honoured. Default 300 s. */
  maxReconnectWaitMs?: number;
  /** Uniform in [0, 1) for backoff jitter; injectable for tests. */
  random?: () => number;
  /**
   * Every wait of the client itself (backoff between rounds, a client.reconnect wait, the
   * primary probe interval): resolves after `ms`, rejects once `signal` aborts. Injectable so
   * tests can run the retry schedule on a virtual clock; request timeouts stay real.
   */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  logger?: Logger;
}

const tlsSchema = z.strictObject({
  ca: z.string().optional(),
  rejectUnauthorized: z.boolean().optional(),
});

const poolSchema = z.strictObject({
  url: z.string().transform((url, ctx) => {
    try {
      return parseStratumUrl(url);
    } catch (error) {
      ctx.addIssue({ code: 'custom', message: (error as Error).message });
      return z.NEVER;
    }
  }),
  user: z.string().min(1).max(256),
  password: z.string().max(256),
  tls: tlsSchema.optional(),
});

const positiveMs = z.number().int().positive();

/**
 * Rounds through the pool list while no pool is live: 0.5 s doubling to 4 s, each delay drawn
 * from [step/2, step]. A pool that comes back is in use at most 4 s (plus one handshake)
 * later; one connection attempt per pool every 2–4 s is nothing for a pool to serve.
 */
export const POOL_RETRY_BACKOFF = { minMs: 500, maxMs: 4_000 } as const;

const optionsSchema = z.object({
  pools: z.array(poolSchema).min(1),
  algorithm: z.enum(ALGORITHMS).default('sha256d'),
  agent: z.string().min(1).max(64).default('powbridge/0.1.0'),
  requestTimeoutMs: positiveMs.default(10_000),
  backoff: z
    .strictObject({
      minMs: positiveMs.default(POOL_RETRY_BACKOFF.minMs),
      maxMs: positiveMs.default(POOL_RETRY_BACKOFF.maxMs),
    })
    .refine((b) => b.maxMs >= b.minMs, { error: 'maxMs must be >= minMs' })
    .default(POOL_RETRY_BACKOFF),
  silenceTimeoutMs: positiveMs.default(120_000),
  primaryRetryMs: positiveMs.default(60_000),
  versionRolling: z
    .strictObject({
      mask: z.number().int().min(1).max(0xffffffff),
      minBitCount: z.number().int().min(0).max(32).default(2),
    })
    .nullable()
    .default({ mask: 0x1fffe000, minBitCount: 2 }),
  maxReconnectWaitMs: z.number().int().min(0).default(300_000),
});

interface Pool {
  endpoint: StratumEndpoint;
  user: string;
  password: string;
  tls?: TlsOptions;
}

interface Established {
  session: UpstreamSession;
  index: number;
  /** The URL actually used (a client.reconnect may have changed the port). */
  display: string;
}

/** What to do after an upstream session ends. */
interface Plan {
  delayMs: number;
  /** Pool indices to try, in order. */
  order: number[];
  /** Port for the first pool of `order` (client.reconnect). */
  portOverride: number | null;
}

function describeOptionsError(error: z.ZodError): string {
  const issue = error.issues[0];
  const where = issue?.path.join('.') || 'options';
  return `stratum pool config: ${where}: ${issue?.message}`;
}

export class StratumPool extends EventEmitter<WorkSourceEvents> implements WorkSource {
  readonly algorithm: Algorithm;
  private readonly settings: z.output<typeof optionsSchema>;
  private readonly pools: Pool[];
  private readonly logger: Logger;
  private readonly backoff: Backoff;
  private readonly resumeIds: (string | null)[];
  private state: SourceState = 'down';
  private sessionCounter = 0;
  private active: Established | null = null;
  private running: AbortController | null = null;
  private loop: Promise<void> | null = null;
  private endActive: ((plan: Plan) => void) | null = null;
  private nextPlan: Plan | null = null;
  /** The pending primary probe (its wait, then its handshake); aborting it cancels both. */
  private probe: AbortController | null = null;
  private readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;

  /** Throws an Error naming the offending key when the options are invalid. */
  constructor(options: StratumPoolOptions) {
    super();
    const { logger, random, sleep, ...data } = options;
    const parsed = optionsSchema.safeParse(data);
    if (!parsed.success) throw new Error(describeOptionsError(parsed.error));
    this.settings = parsed.data;
    this.algorithm = parsed.data.algorithm;
    this.pools = parsed.data.pools.map(({ url, ...rest }) => ({ endpoint: url, ...rest }));
    this.resumeIds = this.pools.map(() => null);
    this.logger = logger ?? silentLogger;
    this.sleep = sleep ?? ((ms, signal) => delay(ms, undefined, { signal }));
    this.backoff = new Backoff({
      ...parsed.data.backoff,
      ...(random ? { random } : {}),
    });
  }

  start(): void {
    if (this.running !== null) return;
    const running = new AbortController();
    this.running = running;
    this.loop = this.run(running.signal);
  }

  async stop(): Promise<void> {
    const running = this.running;
    if (running === null) return;
    running.abort();
    this.stopProbing();
    this.active?.session.close('stopped');
    await this.loop;
    this.running = null;
    this.loop = null;
    this.setState('down');
  }

  status(): SourceStatus {
    const active = this.active;
    return {
      state: this.state,
      upstream: active?.display ?? null,
      terms: active?.session.terms() ?? null,
      job: active?.session.job() ?? null,
    };
  }

  submit(share: UpstreamShare): Promise<SubmitOutcome> {
    if (this.active === null) {
      return Promise.resolve({ accepted: false, reason: 'no upstream connected' });
    }
    return this.active.session.submit(share);
  }

  private pool(index: number): Pool {
    const pool = this.pools[index];
    if (pool === undefined) throw new RangeError(`no pool ${index}`);
    return pool;
  }

  private fullRound(delayMs: number): Plan {
    return { delayMs, order: this.pools.map((_, i) => i), portOverride: null };
  }

  private async run(signal: AbortSignal): Promise<void> {
    let plan = this.fullRound(0);
    while (!signal.aborted) {
      if (plan.delayMs > 0) {
        try {
          await this.sleep(plan.delayMs, signal);
        } catch {
          break; // aborted by stop()
        }
      }
      this.setState('connecting');
      const established = await this.establishFirst(plan, signal);
      if (signal.aborted) {
        established?.session.close('stopped');
        break;
      }
      if (established === null) {
        this.setState('down');
        plan = this.fullRound(this.backoff.next());
        this.logger.warn({ retryInMs: plan.delayMs }, 'no pool available');
        continue;
      }
      this.backoff.reset();
      plan = await new Promise<Plan>((resolve) => {
        this.endActive = resolve;
        this.activate(established);
      });
    }
  }

  /** Try the pools of the plan in order; the first that completes the handshake wins. */
  private async establishFirst(plan: Plan, signal: AbortSignal): Promise<Established | null> {
    for (const [position, index] of plan.order.entries()) {
      if (signal.aborted) return null;
      const port = position === 0 ? plan.portOverride : null;
      try {
        return await this.establish(index, signal, port);
      } catch (error) {
        const reason = error instanceof SessionError ? error.message : String(error);
        this.logger.warn({ pool: this.pool(index).endpoint.display }, `pool failed: ${reason}`);
      }
    }
    return null;
  }

  private async establish(
    index: number,
    signal: AbortSignal,
    portOverride: number | null = null,
  ): Promise<Established> {
    const pool = this.pool(index);
    const endpoint = portOverride === null ? pool.endpoint : withPort(pool.endpoint, portOverride);
    const s = this.settings;
    const session = await UpstreamSession.establish({
      endpoint,
      user: pool.user,
      password: pool.password,
      agent: s.agent,
      versionRolling: s.versionRolling,
      requestTimeoutMs: s.requestTimeoutMs,
      silenceTimeoutMs: s.silenceTimeoutMs,
      resumeSessionId: this.resumeIds[index] ?? null,
      logger: this.logger.child({ pool: endpoint.display }),
      signal,
      ...(pool.tls ? { tls: pool.tls } : {}),
    });
    return { session, index, display: endpoint.display };
  }

  private activate(established: Established): void {
    const { session, index, display } = established;
    this.active = established;
    this.resumeIds[index] = session.subscriptionId;
    session.on('terms', (terms) => this.emit('terms', terms));
    session.on('job', (job) => this.emit('job', job));
    session.on('message', (text) => this.emit('message', text));
    session.on('reconnect', (params) => this.onReconnect(session, index, params));
    session.once('close', (reason) => this.onSessionClosed(established, reason));
    session.activate(() => ++this.sessionCounter);
    this.logger.info({ pool: display }, 'upstream live');
    this.setState('live');
    if (index > 0) this.scheduleProbe();
  }

  private onSessionClosed({ session, index, display }: Established, reason: string): void {
    // A session replaced by the primary is closed on purpose; the new one carries on.
    session.removeAllListeners();
    if (this.active?.session !== session) return;
    this.active = null;
    this.stopProbing();
    const plan = this.nextPlan ?? this.afterLoss(index, session.stalled !== null);
    this.nextPlan = null;
    const stopping = this.running === null || this.running.signal.aborted;
    if (!stopping) {
      this.logger.warn({ pool: display, retryInMs: plan.delayMs }, `upstream lost: ${reason}`);
      this.setState('connecting');
    }
    const end = this.endActive;
    this.endActive = null;
    end?.(plan);
  }

  /**
   * The round after the live pool was lost. A pool that closed the connection is tried again
   * first, after the backoff's first step: it usually refuses or accepts the next connection
   * at once. A pool that stopped answering goes last and the others are tried at once (they
   * have not been hammered): its next handshake would likely hang for a request timeout too.
   */
  private afterLoss(index: number, stalled: boolean): Plan {
    if (!stalled || this.pools.length === 1) return this.fullRound(this.backoff.next());
    const others = this.pools.map((_, i) => i).filter((i) => i !== index);
    return { delayMs: 0, order: [...others, index], portOverride: null };
  }

  /** client.reconnect: honoured only towards the same host, since another host is unvetted. */
  private onReconnect(session: UpstreamSession, index: number, params: ReconnectParams): void {
    const { endpoint } = this.pool(index);
    if (params.host !== null && !sameHost(params.host, endpoint.host)) {
      this.logger.warn(
        { pool: endpoint.display, host: params.host },
        'ignoring client.reconnect to another host',
      );
      return;
    }
    const waitMs = Math.min((params.waitSeconds ?? 0) * 1000, this.settings.maxReconnectWaitMs);
    const others = this.pools.map((_, i) => i).filter((i) => i !== index);
    this.nextPlan = { delayMs: waitMs, order: [index, ...others], portOverride: params.port };
    this.logger.info(
      { pool: endpoint.display, port: params.port ?? endpoint.port, waitMs },
      'pool asked to reconnect',
    );
    session.close('pool asked to reconnect');
  }

  private scheduleProbe(): void {
    this.stopProbing();
    const probe = new AbortController();
    this.probe = probe;
    this.sleep(this.settings.primaryRetryMs, probe.signal).then(
      () => void this.probePrimary(probe),
      () => undefined, // cancelled: the pool switched or stopped
    );
  }

  private stopProbing(): void {
    this.probe?.abort();
    this.probe = null;
  }

  /** While on a lower pool: is the primary back? Switch as soon as its handshake completes. */
  private async probePrimary(probe: AbortController): Promise<void> {
    const running = this.running;
    if (running === null || this.probe !== probe) return;
    if (this.active === null || this.active.index === 0) return;
    let established: Established;
    try {
      established = await this.establish(0, AbortSignal.any([running.signal, probe.signal]));
    } catch (error) {
      this.logger.debug({ reason: (error as Error).message }, 'primary pool still unavailable');
      if (this.probe === probe && this.active !== null && this.active.index > 0) {
        this.scheduleProbe();
      }
      return;
    }
    if (probe.signal.aborted || running.signal.aborted || this.active === null) {
      established.session.close('not needed');
      return;
    }
    this.probe = null;
    const previous = this.active.session;
    this.logger.info('primary pool is back; switching to it');
    this.activate(established);
    previous.close('switched back to the primary pool');
  }

  private setState(state: SourceState): void {
    if (state === this.state) return;
    this.state = state;
    this.emit('state', state);
  }
}
