import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
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
 * drops, the list is tried again from the top after a capped exponential backoff with jitter;
 * while mining on a lower pool, the primary is probed every `primaryRetryMs` and taken back as
 * soon as it completes its handshake. Every switch starts a new upstream session number, so
 * shares for jobs of the previous session are refused here instead of forwarded.
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
  /** Delay between rounds through the pool list. Default 1 s doubling to 60 s. */
  backoff?: { minMs?: number; maxMs?: number };
  /** How often a lower pool's user checks whether the primary is back. Default 60 s. */
  primaryRetryMs?: number;
  /** BIP310 request sent in mining.configure; null disables version rolling. */
  versionRolling?: { mask: number; minBitCount?: number } | null;
  /** Longest client.reconnect wait honoured. Default 300 s. */
  maxReconnectWaitMs?: number;
  /** Uniform in [0, 1) for backoff jitter; injectable for tests. */
  random?: () => number;
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

const optionsSchema = z.object({
  pools: z.array(poolSchema).min(1),
  algorithm: z.enum(ALGORITHMS).default('sha256d'),
  agent: z.string().min(1).max(64).default('powbridge/0.1.0'),
  requestTimeoutMs: positiveMs.default(10_000),
  backoff: z
    .strictObject({ minMs: positiveMs.default(1_000), maxMs: positiveMs.default(60_000) })
    .refine((b) => b.maxMs >= b.minMs, { error: 'maxMs must be >= minMs' })
    .default({ minMs: 1_000, maxMs: 60_000 }),
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
  private probeTimer: NodeJS.Timeout | null = null;
  private probe: AbortController | null = null;

  /** Throws an Error naming the offending key when the options are invalid. */
  constructor(options: StratumPoolOptions) {
    super();
    const { logger, random, ...data } = options;
    const parsed = optionsSchema.safeParse(data);
    if (!parsed.success) throw new Error(describeOptionsError(parsed.error));
    this.settings = parsed.data;
    this.algorithm = parsed.data.algorithm;
    this.pools = parsed.data.pools.map(({ url, ...rest }) => ({ endpoint: url, ...rest }));
    this.resumeIds = this.pools.map(() => null);
    this.logger = logger ?? silentLogger;
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
          await sleep(plan.delayMs, undefined, { signal });
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

  private onSessionClosed({ session, display }: Established, reason: string): void {
    // A session replaced by the primary is closed on purpose; the new one carries on.
    session.removeAllListeners();
    if (this.active?.session !== session) return;
    this.active = null;
    this.stopProbing();
    const stopping = this.running === null || this.running.signal.aborted;
    if (!stopping) {
      this.logger.warn({ pool: display }, `upstream lost: ${reason}`);
      this.setState('connecting');
    }
    const plan = this.nextPlan ?? this.fullRound(this.backoff.next());
    this.nextPlan = null;
    const end = this.endActive;
    this.endActive = null;
    end?.(plan);
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
    this.probeTimer = setTimeout(() => void this.probePrimary(), this.settings.primaryRetryMs);
  }

  private stopProbing(): void {
    if (this.probeTimer !== null) clearTimeout(this.probeTimer);
    this.probeTimer = null;
    this.probe?.abort();
    this.probe = null;
  }

  /** While on a lower pool: is the primary back? Switch as soon as its handshake completes. */
  private async probePrimary(): Promise<void> {
    this.probeTimer = null;
    const running = this.running;
    if (running === null || this.active === null || this.active.index === 0) return;
    const probe = new AbortController();
    this.probe = probe;
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
