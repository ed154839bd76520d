import { EventEmitter } from 'node:events';
import type { Logger } from '../log.js';
import {
  describeError,
  parseConfigureResult,
  parseSubscribeResult,
  type ReconnectParams,
  StratumErrorCode,
  type VersionRollingRequest,
} from '../stratum/index.js';
import type { Job } from '../work/job.js';
import type { SourceJob, SubmitOutcome, UpstreamShare, UpstreamTerms } from './work-source.js';
import {
  type IncomingCall,
  type RequestResult,
  StratumConnection,
  type TlsOptions,
} from './stratum-connection.js';
import type { StratumEndpoint } from './stratum-endpoint.js';

/**
 * One upstream session on one pool: the handshake (configure, subscribe and authorize sent
 * together, then extranonce.subscribe), then the pool's notifications turned into terms and
 * jobs.
 *
 * A session is established first and activated later, so the pool client can probe its
 * primary pool while still mining on another one. Until `activate()`, notifications only
 * update state; afterwards they are emitted.
 *
 * Version rolling (docs/design.md §3.1): the session goes live on the subscribe and authorize
 * answers alone. node-stratum-pool never answers `mining.configure`, and waiting for it cost
 * a whole request timeout. Until the pool grants a mask (configure answer or
 * `mining.set_version_mask`, whichever comes; a set_version_mask is newer and wins), the terms
 * say `versionMask: null`, so no job is mined with rolled versions; a grant that arrives later
 * is emitted as new terms in the same session and takes effect from then on.
 *
 * Difficulty: `mining.set_difficulty` applies to the next job (docs/design.md §3.1), so it is
 * held as pending and folded into the terms when the next `mining.notify` arrives; `terms` is
 * emitted before that `job`. A pool that sends set_difficulty and then a job (the usual order)
 * sees the new difficulty applied with the job.
 *
 * A pool that stops answering while TCP stays up is given up on (`stalled`): a submit not
 * answered within the request timeout, or no line at all for `silenceTimeoutMs`.
 */

export interface SessionConfig {
  endpoint: StratumEndpoint;
  tls?: TlsOptions;
  user: string;
  password: string;
  agent: string;
  versionRolling: VersionRollingRequest | null;
  requestTimeoutMs: number;
  /** No line from the pool for this long: the pool is given up on. */
  silenceTimeoutMs: number;
  /** The pool's subscription id from our previous session with it, to resume. */
  resumeSessionId: string | null;
  logger: Logger;
  signal?: AbortSignal;
}

export class SessionError extends Error {
  override name = 'SessionError';
}

export interface UpstreamSessionEvents {
  terms: [UpstreamTerms];
  job: [SourceJob];
  message: [string];
  reconnect: [ReconnectParams];
  close: [reason: string];
}

/** Stratum's default before any set_difficulty. */
const DEFAULT_DIFFICULTY = 1;

export class UpstreamSession extends EventEmitter<UpstreamSessionEvents> {
  /** The pool's subscription id, for resuming after a reconnect. */
  subscriptionId: string | null = null;
  private extranonce1 = '';
  private extranonce2Size = 0;
  private versionMask: number | null = null;
  /** A mining.set_version_mask came: a configure answer arriving later is older news. */
  private maskAnnounced = false;
  private stalledReason: string | null = null;
  private difficulty = DEFAULT_DIFFICULTY;
  private pendingDifficulty: number | null = null;
  private currentJob: Job | null = null;
  private session: number | null = null;
  /** The first job of each session number is marked clean: earlier jobs are all invalid. */
  private sessionHasJob = false;
  private allocate: (() => number) | null = null;

  private constructor(
    private readonly connection: StratumConnection,
    private readonly config: SessionConfig,
  ) {
    super();
    connection.on('call', (call) => this.onCall(call));
    connection.once('close', (reason) => this.emit('close', reason));
  }

  /** Connect and run the handshake. Rejects with a SessionError naming the failed step. */
  static async establish(config: SessionConfig): Promise<UpstreamSession> {
    let connection: StratumConnection;
    try {
      connection = await StratumConnection.open({
        endpoint: config.endpoint,
        connectTimeoutMs: config.requestTimeoutMs,
        logger: config.logger,
        ...(config.tls ? { tls: config.tls } : {}),
        ...(config.signal ? { signal: config.signal } : {}),
      });
    } catch (error) {
      throw new SessionError(`connect failed: ${(error as Error).message}`);
    }
    const session = new UpstreamSession(connection, config);
    const onAbort = () => connection.close('stopped');
    config.signal?.addEventListener('abort', onAbort, { once: true });
    if (config.signal?.aborted) onAbort();
    try {
      await session.handshake();
      return session;
    } catch (error) {
      connection.close((error as Error).message);
      throw error;
    } finally {
      config.signal?.removeEventListener('abort', onAbort);
    }
  }

  private async handshake(): Promise<void> {
    const { config, connection } = this;
    const timeout = config.requestTimeoutMs;
    // configure, subscribe and authorize go out together, one round trip (Bitaxe's esp-miner
    // sends them the same way); pools handle a connection's requests in order. The subscribe
    // and authorize answers decide the session. configure waits as long as the connection
    // lives: a pool that never answers it (node-stratum-pool) costs nothing, a late grant
    // still counts.
    if (config.versionRolling !== null) {
      void connection
        .request(
          {
            method: 'mining.configure',
            params: {
              extensions: ['version-rolling'],
              versionRolling: config.versionRolling,
              other: {},
            },
          },
          null,
        )
        .then((configured) => this.onConfigured(configured));
    }
    const subscribe = connection.request(
      {
        method: 'mining.subscribe',
        params: { agent: config.agent, sessionId: config.resumeSessionId },
      },
      timeout,
    );
    const authorize = connection.request(
      { method: 'mining.authorize', params: { user: config.user, password: config.password } },
      timeout,
    );

    const subscribed = await subscribe;
    if (subscribed.kind !== 'answer') throw new SessionError(`subscribe ${failure(subscribed)}`);
    if (!subscribed.outcome.ok) {
      throw new SessionError(`subscribe refused: ${describeError(subscribed.outcome.error)}`);
    }
    const terms = parseSubscribeResult(subscribed.outcome.result);
    if (!terms.ok) throw new SessionError(`subscribe: ${terms.error}`);
    this.subscriptionId = terms.value.sessionId;
    this.extranonce1 = terms.value.extranonce1;
    this.extranonce2Size = terms.value.extranonce2Size;

    const authorized = await authorize;
    if (authorized.kind !== 'answer') throw new SessionError(`authorize ${failure(authorized)}`);
    if (!authorized.outcome.ok || authorized.outcome.result !== true) {
      const why = authorized.outcome.ok
        ? 'result not true'
        : describeError(authorized.outcome.error);
      throw new SessionError(`authorize refused for user ${config.user}: ${why}`);
    }
    // A bad line right behind the answers, in the same read, has closed the connection before
    // anyone could listen for it: such a session would look live forever.
    if (connection.closed) throw new SessionError('pool closed the connection after the handshake');

    connection.watchSilence(config.silenceTimeoutMs, () =>
      this.stall(`no message from the pool for ${config.silenceTimeoutMs} ms`),
    );
    // Optional (NiceHash-style): a pool without it answers an error, or nothing.
    void connection
      .request({ method: 'mining.extranonce.subscribe', params: {} }, timeout)
      .then((result) => {
        if (result.kind !== 'answer' || !result.outcome.ok) {
          config.logger.debug('pool does not support mining.extranonce.subscribe');
        }
      });
  }

  private onConfigured(result: RequestResult): void {
    if (result.kind !== 'answer') return; // closed: nothing to set
    if (!result.outcome.ok) {
      this.config.logger.debug('pool refused mining.configure: no version rolling');
      return;
    }
    if (this.maskAnnounced) return;
    this.setVersionMask(parseConfigureResult(result.outcome.result).versionRollingMask);
  }

  private setVersionMask(mask: number | null): void {
    if (mask === this.versionMask) return;
    this.versionMask = mask;
    this.emitTerms();
  }

  /** Why the pool was given up on while its connection was still open; null if it was not. */
  get stalled(): string | null {
    return this.stalledReason;
  }

  private stall(reason: string): void {
    if (this.connection.closed) return;
    this.stalledReason = reason;
    this.connection.close(`pool stopped answering: ${reason}`);
  }

  /** Start emitting terms and jobs under session numbers from `allocate`. */
  activate(allocate: () => number): void {
    this.allocate = allocate;
    this.session = allocate();
    this.sessionHasJob = false;
    // No job yet: a pending difficulty has no job to wait for.
    if (this.currentJob === null && this.pendingDifficulty !== null) {
      this.difficulty = this.pendingDifficulty;
      this.pendingDifficulty = null;
    }
    this.emitTerms();
    if (this.currentJob !== null) this.emitJob(this.currentJob);
  }

  terms(): UpstreamTerms | null {
    if (this.session === null) return null;
    return {
      session: this.session,
      extranonce1: this.extranonce1,
      extranonce2Size: this.extranonce2Size,
      difficulty: this.difficulty,
      versionMask: this.versionMask,
    };
  }

  job(): SourceJob | null {
    if (this.session === null || this.currentJob === null || !this.sessionHasJob) return null;
    return { ...this.currentJob, session: this.session };
  }

  close(reason: string): void {
    this.connection.close(reason);
  }

  async submit(share: UpstreamShare): Promise<SubmitOutcome> {
    if (this.session === null || this.connection.closed) {
      return { accepted: false, reason: 'upstream disconnected' };
    }
    if (share.session !== this.session) {
      return { accepted: false, reason: 'stale: job from an earlier upstream session' };
    }
    const timeout = this.config.requestTimeoutMs;
    const { session: _session, ...submission } = share;
    const result = await this.connection.request(
      { method: 'mining.submit', params: { user: this.config.user, ...submission } },
      timeout,
    );
    switch (result.kind) {
      case 'timeout':
        // Pools answer every submit; one that does not within the timeout has hung.
        this.stall(`no answer to mining.submit within ${timeout} ms`);
        return { accepted: false, reason: `no answer from the pool within ${timeout} ms` };
      case 'closed':
        return { accepted: false, reason: 'upstream disconnected' };
      case 'answer': {
        const { outcome } = result;
        if (outcome.ok && outcome.result === true) return { accepted: true };
        if (outcome.ok) return { accepted: false, reason: 'rejected by the pool' };
        const refused: SubmitOutcome = { accepted: false, reason: describeError(outcome.error) };
        if (outcome.error.code !== null) refused.code = outcome.error.code;
        return refused;
      }
    }
  }

  private onCall(call: IncomingCall): void {
    const { logger } = this.config;
    if (call.kind === 'unknown') {
      // Pools probe with methods we may not know; answer requests so they do not hang.
      if (call.id !== null) {
        this.connection.replyError(call.id, {
          code: StratumErrorCode.methodNotFound,
          message: 'method not found',
        });
      }
      logger.debug({ method: call.method }, 'unknown method from pool');
      return;
    }
    switch (call.method) {
      case 'mining.notify':
        this.onJob(call.params);
        return;
      case 'mining.set_difficulty':
        this.pendingDifficulty = call.params.difficulty;
        return;
      case 'mining.set_extranonce':
        this.extranonce1 = call.params.extranonce1;
        this.extranonce2Size = call.params.extranonce2Size;
        // Jobs of the old extranonce are void: new session number, no job until the next notify.
        this.currentJob = null;
        this.newSessionNumber();
        return;
      case 'mining.set_version_mask':
        this.maskAnnounced = true;
        this.setVersionMask(call.params.mask);
        return;
      case 'client.reconnect':
        this.emit('reconnect', call.params);
        return;
      case 'client.show_message':
        logger.info({ text: call.params.message.slice(0, 512) }, 'message from pool');
        this.emit('message', call.params.message);
        return;
      case 'client.get_version':
        if (call.kind === 'request') this.connection.reply(call.id, this.config.agent);
        return;
      case 'mining.ping':
        if (call.kind === 'request') this.connection.reply(call.id, 'pong');
        return;
      default:
        // A miner-side method sent by the pool: meaningless here.
        if (call.kind === 'request') {
          this.connection.replyError(call.id, {
            code: StratumErrorCode.methodNotFound,
            message: `${call.method} is not served by a miner`,
          });
        }
    }
  }

  private onJob(job: Job): void {
    let termsChanged = false;
    if (this.pendingDifficulty !== null) {
      termsChanged = this.pendingDifficulty !== this.difficulty;
      this.difficulty = this.pendingDifficulty;
      this.pendingDifficulty = null;
    }
    this.currentJob = job;
    if (this.session === null) return;
    if (termsChanged) this.emitTerms();
    this.emitJob(job);
  }

  private emitJob(job: Job): void {
    const session = this.session;
    if (session === null) return;
    const clean = job.clean || !this.sessionHasJob;
    this.sessionHasJob = true;
    this.currentJob = { ...job, clean };
    this.emit('job', { ...job, clean, session });
  }

  private newSessionNumber(): void {
    if (this.allocate === null) return;
    this.session = this.allocate();
    this.sessionHasJob = false;
    this.emitTerms();
  }

  /** Terms go out only once the session is active, and never after it closed. */
  private emitTerms(): void {
    const terms = this.terms();
    if (terms !== null && !this.connection.closed) this.emit('terms', terms);
  }
}

function failure(result: { kind: 'timeout' } | { kind: 'closed'; reason: string }): string {
  return result.kind === 'timeout' ? 'timed out' : `failed: ${result.reason}`;
}
