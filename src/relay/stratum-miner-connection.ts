import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { TokenBucket } from '../lib/token-bucket.js';
import type { Logger } from '../log.js';
import { RpcError, RpcErrorCode } from '../protocol/errors.js';
import {
  buildSubscribeResult,
  type ConfigureParams,
  encodeError,
  encodeNotification,
  encodeResult,
  LineDecoder,
  parseMessage,
  StratumErrorCode,
  type StratumId,
  type StratumMessage,
  type SubmitParams,
} from '../stratum/index.js';
import type { Job } from '../work/job.js';
import type { ClientChannel, ClientSession } from './client-session.js';
import { RelayFullError, type Stratifier } from './stratifier.js';
import { answerConfigure } from './stratum-miner-configure.js';
import type { StratumDropReason, StratumLimits } from './stratum-miner-limits.js';

/**
 * One standard miner (cpuminer, cgminer, an ASIC) on one TCP connection: the server side of
 * Stratum V1. Miners here are donors (docs/design.md §1): their shares are checked and forwarded like
 * anyone's, and they earn no tickets, because a Stratum miner has no way to receive one.
 *
 * Handshake: mining.configure (optional, first) → mining.subscribe registers the miner with
 * the stratifier (that is when it gets its extranonce1) → mining.authorize (any name) starts
 * the work: set_difficulty, then notify. Subscribe and authorize may come in either order.
 * Miners start at the port's own difficulty, or at the one they ask for with
 * mining.suggest_difficulty (before or after authorize); vardiff takes it from there.
 *
 * When the relay has no upstream yet, subscribe is answered with Stratum error 20 and the
 * connection stays open: cgminer and cpuminer treat a failed subscribe as a dead pool and
 * reconnect after their retry pause, and a miner that retries on the same connection
 * succeeds once work exists. The handshake timeout bounds how long such a connection lives.
 * When the port is full (`limits.maxStratumClients`), subscribe gets the same error 20 and
 * the relay hangs up: cpuminer's one retry on the connection then reads the close, and both
 * pause before they connect again, so a crowd of miners holds no sockets while it waits.
 *
 * A working miner keeps its place only by working: it must get a share accepted within the
 * share deadline, counted from the start of work and again from each accepted share (paused
 * while the upstream gives no work). Pings, bad shares and stray bytes do not count.
 *
 * Nothing about the peer (address, port, worker name) is read into logs.
 */

export interface MinerConnectionOptions {
  socket: Socket;
  stratifier: Stratifier;
  limits: StratumLimits;
  log: Logger;
  /** A job goes to every miner as the same line: the connector encodes it once. */
  encodeJob: (job: Job) => string;
  /** Difficulty a miner starts at (the stratifier's when undefined). */
  initialDifficulty?: number;
  /** Told of every drop or refusal the relay counts (not the miner's own hang-ups). */
  countDrop?: (reason: StratumDropReason) => void;
}

type Request = Extract<StratumMessage, { kind: 'request' }>;

/**
 * Miners understand the Stratum share codes 20–25; anything else the relay raises is 20 (so a
 * refused subscribe, 37 on a circuit, is 20 here: miners know it and retry after their pause).
 */
function minerCode(code: number): number {
  return code >= StratumErrorCode.other && code <= StratumErrorCode.notSubscribed
    ? code
    : StratumErrorCode.other;
}

export class StratumMinerConnection implements ClientChannel {
  /** Fills the subscription id miners expect. Random: a counter would tell how many came before. */
  private readonly subscriptionId = randomBytes(8).toString('hex');
  private readonly socket: Socket;
  private readonly stratifier: Stratifier;
  private readonly limits: StratumLimits;
  private readonly log: Logger;
  private readonly encodeJob: (job: Job) => string;
  private readonly countDrop: (reason: StratumDropReason) => void;
  private initialDifficulty: number | undefined;
  private readonly decoder: LineDecoder;
  private readonly bucket: TokenBucket;
  private readonly idleTimer: NodeJS.Timeout;
  private readonly handshakeTimer: NodeJS.Timeout;
  private graceTimer: NodeJS.Timeout | null = null;
  /** Runs while working and the upstream gives work; re-armed by each accepted share. */
  private shareTimer: NodeJS.Timeout | null = null;

  private session: ClientSession | null = null;
  private authorized = false;
  /** Subscribed and authorized: difficulty and jobs flow. */
  private working = false;
  /** Version rolling was granted in mining.configure, so set_version_mask means something. */
  private rolling = false;
  private grantedMask: number | null = null;
  private versionMaskRequest = 0;
  /** The miner sent mining.extranonce.subscribe and can take set_extranonce. */
  private extranonceUpdates = false;
  private invalidMessages = 0;
  private closing = false;

  constructor(options: MinerConnectionOptions) {
    this.socket = options.socket;
    this.stratifier = options.stratifier;
    this.limits = options.limits;
    this.log = options.log;
    this.encodeJob = options.encodeJob;
    this.countDrop = options.countDrop ?? (() => {});
    this.initialDifficulty = options.initialDifficulty;
    this.bucket = new TokenBucket({
      perSecond: this.limits.maxRequestsPerSecond,
      burstSeconds: this.limits.burstSeconds,
    });
    this.decoder = new LineDecoder({ maxLineBytes: this.limits.maxLineBytes });
    this.decoder.on('line', (line) => this.onLine(line));
    this.decoder.on('error', (error) => this.drop(error.message, 'abuse'));

    // Our own timer, not socket.setTimeout: that one also counts our writes as activity, and
    // jobs keep flowing to a miner that died without a FIN.
    this.idleTimer = setTimeout(() => this.drop('idle', 'idle'), this.limits.idleTimeoutMs);
    this.handshakeTimer = setTimeout(() => {
      if (!this.working) this.drop('handshake timeout', 'handshake-timeout');
    }, this.limits.handshakeTimeoutMs);

    this.socket.on('data', (chunk: Buffer) => {
      this.idleTimer.refresh();
      this.decoder.push(chunk);
    });
    this.socket.on('error', (err) => this.log.debug({ err: err.message }, 'miner socket error'));
    this.socket.once('close', () => this.onClose());
  }

  // ---- ClientChannel: what the stratifier sends -------------------------------------------

  sendJob(job: Job): void {
    if (this.working) this.write(this.encodeJob(job));
  }

  sendDifficulty(difficulty: number): void {
    // Before authorize the miner gets the then-current difficulty when work starts.
    if (this.working) {
      this.write(encodeNotification({ method: 'mining.set_difficulty', params: { difficulty } }));
    }
  }

  sendExtranonce(extranonce1: string, extranonce2Size: number): void {
    if (this.extranonceUpdates) {
      this.write(
        encodeNotification({
          method: 'mining.set_extranonce',
          params: { extranonce1, extranonce2Size },
        }),
      );
      return;
    }
    // This miner cannot learn its new extranonce on this connection. client.reconnect is a
    // hint; hanging up is what works (cpuminer ignores a reconnect without host and port,
    // cgminer one without a domain, and both reconnect when the pool closes).
    const reconnect = encodeNotification({
      method: 'client.reconnect',
      params: { host: null, port: null, waitSeconds: 0 },
    });
    this.retire('extranonce changed, miner did not subscribe to extranonce updates', [reconnect]);
  }

  sendVersionMask(mask: number | null): void {
    if (!this.rolling) return;
    // BIP310 has no "rolling off": a zero mask is how a miner is told to roll nothing.
    this.write(
      encodeNotification({ method: 'mining.set_version_mask', params: { mask: mask ?? 0 } }),
    );
  }

  sendUpstreamState(live: boolean, message: string): void {
    this.write(encodeNotification({ method: 'client.show_message', params: { message } }));
    // No work, no share: the deadline waits for the upstream, then starts afresh.
    if (live) this.armShareDeadline();
    else this.pauseShareDeadline();
  }

  close(reason: string): void {
    this.session = null; // the stratifier already dropped it
    this.retire(reason, [
      encodeNotification({ method: 'client.show_message', params: { message: reason } }),
    ]);
  }

  /** Relay shutdown. */
  shutdown(): void {
    this.drop('relay shutting down');
  }

  // ---- incoming -----------------------------------------------------------------------------

  private onLine(line: string): void {
    if (this.closing) return;
    if (!this.bucket.take()) {
      this.drop('too many requests', 'abuse');
      return;
    }
    const parsed = parseMessage(line);
    if (!parsed.ok) {
      const code =
        parsed.method === undefined ? RpcErrorCode.invalidRequest : RpcErrorCode.invalidParams;
      this.invalid(parsed.id ?? null, code, parsed.error);
      return;
    }
    const message = parsed.value;
    switch (message.kind) {
      case 'request':
        this.onRequest(message);
        return;
      case 'unknown':
        this.invalid(
          message.id,
          StratumErrorCode.methodNotFound,
          `unknown method ${message.method.slice(0, 64)}`,
        );
        return;
      case 'notification':
        this.invalid(null, RpcErrorCode.invalidRequest, `${message.method}: a request needs an id`);
        return;
      case 'response':
        // The relay sends miners no requests; an answer to a notification is harmless noise.
        return;
    }
  }

  private onRequest(request: Request): void {
    const { id } = request;
    switch (request.method) {
      case 'mining.configure':
        this.onConfigure(id, request.params);
        return;
      case 'mining.subscribe':
        this.onSubscribe(id);
        return;
      case 'mining.authorize':
        // Any worker name: donors are not accounted per worker.
        this.authorized = true;
        this.reply(id, true);
        this.startWork();
        return;
      case 'mining.extranonce.subscribe':
        this.extranonceUpdates = true;
        this.reply(id, true);
        return;
      case 'mining.submit':
        void this.onSubmit(id, request.params);
        return;
      case 'mining.ping':
        this.reply(id, 'pong');
        return;
      case 'mining.suggest_difficulty':
        this.onSuggestDifficulty(id, request.params.difficulty);
        return;
      default:
        this.invalid(
          id,
          StratumErrorCode.methodNotFound,
          `${request.method} is not a miner method`,
        );
    }
  }

  private onConfigure(id: StratumId, params: ConfigureParams): void {
    // The stratifier fixes the mask at registration; a later configure could not change it.
    if (this.session) {
      this.replyError(id, StratumErrorCode.other, 'mining.configure must precede mining.subscribe');
      return;
    }
    const answer = answerConfigure(params, this.stratifier.upstreamTerms?.versionMask ?? null);
    this.rolling = answer.grantedMask !== null;
    this.grantedMask = answer.grantedMask;
    this.versionMaskRequest = answer.versionMaskRequest;
    this.reply(id, answer.result);
  }

  private onSubscribe(id: StratumId): void {
    if (this.session) {
      this.replyError(id, StratumErrorCode.other, 'already subscribed');
      return;
    }
    try {
      const { session, outcome } = this.stratifier.register(this, 'donate', {
        versionMaskRequest: this.versionMaskRequest,
        initialDifficulty: this.initialDifficulty,
        port: 'stratum',
      });
      this.session = session;
      this.reply(
        id,
        buildSubscribeResult({
          sessionId: this.subscriptionId,
          extranonce1: outcome.extranonce1,
          extranonce2Size: outcome.extranonce2Size,
        }),
      );
      // The upstream mask may have changed between configure and subscribe.
      if (this.rolling && outcome.versionMask !== this.grantedMask) {
        this.sendVersionMask(outcome.versionMask);
      }
      this.startWork();
    } catch (err) {
      this.replyFailure(id, err, 'mining.subscribe');
      if (err instanceof RelayFullError) {
        this.countDrop('full');
        this.retire('stratum port is full', []);
      }
    }
  }

  private onSuggestDifficulty(id: StratumId, difficulty: number): void {
    if (this.session) {
      this.stratifier.suggestDifficulty(this.session, difficulty, this.working);
    } else {
      // Not registered yet: it becomes the difficulty the miner starts at.
      this.initialDifficulty = difficulty;
    }
    this.reply(id, true);
  }

  private async onSubmit(id: StratumId, params: SubmitParams): Promise<void> {
    const session = this.session;
    if (!session) {
      this.replyError(id, StratumErrorCode.notSubscribed, 'not subscribed');
      return;
    }
    if (!this.authorized) {
      this.replyError(id, StratumErrorCode.unauthorized, 'unauthorized worker');
      return;
    }
    const { user: _worker, ...share } = params;
    try {
      await this.stratifier.submit(session, share);
      this.reply(id, true);
      this.armShareDeadline();
    } catch (err) {
      this.replyFailure(id, err, 'mining.submit');
    }
  }

  private startWork(): void {
    if (this.working || !this.authorized || this.session === null) return;
    this.working = true;
    clearTimeout(this.handshakeTimer);
    // Before sendCurrentWork, which pauses it again when the upstream has no work.
    this.armShareDeadline();
    // Stratum applies a difficulty to the jobs after it: it must precede the first notify.
    this.write(
      encodeNotification({
        method: 'mining.set_difficulty',
        params: { difficulty: this.session.difficulty },
      }),
    );
    this.stratifier.sendCurrentWork(this.session);
  }

  // ---- the share deadline ---------------------------------------------------------------------

  /** A new full period: work just started, a share was accepted, or the upstream is back. */
  private armShareDeadline(): void {
    const timeoutMs = this.limits.shareTimeoutMs;
    if (timeoutMs === null || !this.working || this.closing) return;
    if (this.shareTimer) {
      this.shareTimer.refresh();
      return;
    }
    this.shareTimer = setTimeout(() => {
      this.shareTimer = null;
      if (this.closing) return;
      const seconds = Math.round(timeoutMs / 1000);
      const message = `no accepted share in ${seconds} s: closing`;
      this.countDrop('no-share');
      this.retire('no accepted share in time', [
        encodeNotification({ method: 'client.show_message', params: { message } }),
      ]);
    }, timeoutMs);
  }

  private pauseShareDeadline(): void {
    if (this.shareTimer) clearTimeout(this.shareTimer);
    this.shareTimer = null;
  }

  // ---- outgoing and closing -------------------------------------------------------------------

  private reply(id: StratumId, result: unknown): void {
    this.write(encodeResult(id, result));
  }

  private replyError(id: StratumId, code: number, message: string): void {
    this.write(encodeError(id, { code, message }));
  }

  private replyFailure(id: StratumId, err: unknown, method: string): void {
    if (err instanceof RpcError) {
      this.replyError(id, minerCode(err.code), err.message);
      return;
    }
    this.log.error(
      { err: err instanceof Error ? err.message : String(err), method },
      'stratum request failed',
    );
    this.replyError(id, StratumErrorCode.other, 'internal error');
  }

  private invalid(id: StratumId, code: number, message: string): void {
    this.replyError(id, code, message);
    this.invalidMessages += 1;
    if (this.invalidMessages >= this.limits.maxInvalidMessages) {
      this.drop('too many invalid messages', 'abuse');
    }
  }

  private write(text: string): void {
    if (this.closing || this.socket.destroyed) return;
    // A miner that does not read would make the relay buffer without bound: drop it.
    if (this.socket.writableLength > this.limits.maxBufferedBytes) {
      this.drop('slow reader', 'slow-reader');
      return;
    }
    this.socket.write(text);
  }

  /** Polite close: say why, let the miner hang up, force it after a grace period. */
  private retire(reason: string, lastLines: string[]): void {
    if (this.closing) return;
    for (const line of lastLines) this.write(line);
    this.closing = true;
    this.pauseShareDeadline();
    this.log.debug({ reason }, 'closing miner connection');
    this.socket.end();
    this.graceTimer = setTimeout(() => this.socket.destroy(), this.limits.closeGraceMs);
  }

  /** Abuse or a dead peer: no goodbye. `counted`: the reason the stats count it under. */
  private drop(reason: string, counted?: StratumDropReason): void {
    if (this.socket.destroyed) return;
    if (counted) this.countDrop(counted);
    this.closing = true;
    this.log.debug({ reason }, 'dropping miner connection');
    this.socket.destroy();
  }

  private onClose(): void {
    this.closing = true;
    this.working = false;
    clearTimeout(this.idleTimer);
    clearTimeout(this.handshakeTimer);
    this.pauseShareDeadline();
    if (this.graceTimer) clearTimeout(this.graceTimer);
    if (this.session) this.stratifier.close(this.session);
    this.session = null;
  }
}
