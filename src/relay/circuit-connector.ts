import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { WebSocket, WebSocketServer } from 'ws';
import { PacedQueue } from '../lib/paced-queue.js';
import { SlowRefusals } from '../lib/slow-refusals.js';
import { TokenBucket } from '../lib/token-bucket.js';
import { routeUpgrades } from '../lib/upgrade-router.js';
import { webSocketEndpoint } from '../lib/ws-endpoint.js';
import { WsCloseCode } from '../lib/ws-close.js';
import { type Logger, silentLogger } from '../log.js';
import { RpcError, RpcErrorCode } from '../protocol/errors.js';
import {
  encodeError,
  encodeNotification,
  encodeResult,
  parseFrame,
  type RpcId,
  type RpcRequest,
} from '../protocol/jsonrpc.js';
import {
  type ClientMethod,
  clientRequests,
  describeIssue,
  isClientMethod,
  type JobParams,
  type RegisterParams,
  type SubmitParams,
  type TicketFinishParams,
  type TicketIssueParams,
  type TicketRedeemParams,
} from '../protocol/messages.js';
import { u32ToHex } from '../work/hex.js';
import type { Job } from '../work/job.js';
import type { TicketService } from '../tickets/service.js';
import type { ClientChannel, ClientMode, ClientSession } from './client-session.js';
import { RelayFullError, type Stratifier } from './stratifier.js';

/**
 * The circuit connector: WebSocket `/v1/circuit`, one connection per circuit, JSON-RPC 2.0
 * text frames (docs/design.md §5). It owns the sockets and nothing else: every frame is size-capped
 * and schema-checked here, then handed to the stratifier. It never learns or logs who the
 * client is (the peer address is the Tor daemon's, and is not read).
 */

export interface CircuitLimits {
  /** Largest frame accepted; larger frames close the connection (ws answers 1009). */
  maxFrameBytes: number;
  /** Invalid frames tolerated per connection before it is closed. */
  maxInvalidFrames: number;
  /** Sustained requests per second per connection (token bucket, burst = 5 s worth). */
  maxRequestsPerSecond: number;
  /** A client that lets this much outgoing data queue up is too slow and is dropped. */
  maxBufferedBytes: number;
  /** Keep-alive ping interval; a client that misses a pong is dropped. */
  pingIntervalMs: number;
  /**
   * Time allowed to register after connecting (at least; each circuit's deadline is up to a
   * quarter later, so circuits opened together do not close together). A redeem-only circuit
   * never registers: it counts as unregistered and is closed at this deadline too, once its
   * requests are answered.
   */
  registerTimeoutMs: number;
  /**
   * Open circuits that have not registered (yet): beyond it an upgrade is refused with HTTP 503
   * and Retry-After, before any WebSocket work.
   */
  maxUnregistered: number;
  /**
   * Handshakes of new circuits and frames of unregistered ones per second, all together, first
   * come first served. One that finds no unit waits for one with its socket paused, so a flood
   * from fresh circuits costs the event loop this much and no more.
   */
  maxUnregisteredRequestsPerSecond: number;
  /**
   * Requests an Abe–Okamoto ticket.open costs (its session may hold a signing slot for the
   * TTL): the relay sets it to the session TTL in seconds.
   */
  ticketSessionCost: number;
}

export const DEFAULT_CIRCUIT_LIMITS: CircuitLimits = {
  maxFrameBytes: 16 * 1024,
  maxInvalidFrames: 10,
  maxRequestsPerSecond: 20,
  maxBufferedBytes: 1024 * 1024,
  pingIntervalMs: 30_000,
  registerTimeoutMs: 10_000,
  maxUnregistered: 256,
  maxUnregisteredRequestsPerSecond: 500,
  ticketSessionCost: 10,
};

/** Circuits refused or dropped for load, since start (docs/design.md §5.1). */
export interface CircuitCounts {
  /** Open now and not registered (redeem-only circuits among them). */
  unregistered: number;
  /** Upgrades refused with 503 at `maxUnregistered`. */
  refusedUnregistered: number;
  /** Circuits closed for not registering within `registerTimeoutMs`. */
  registerTimeouts: number;
  /** Registrations answered 37 because the circuit places or the extranonce slots were full. */
  refusedFull: number;
  /** Handshakes and unregistered circuits waiting for a unit of the pace now. */
  waiting: number;
}

/** Retry-After of the 503 at the cap: unregistered circuits last seconds (the deadline). */
const UNREGISTERED_RETRY_SECONDS = 5;
const UNREGISTERED_REFUSAL =
  'HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n' +
  `Retry-After: ${UNREGISTERED_RETRY_SECONDS}\r\nContent-Length: 0\r\n\r\n`;
/** How late the 503 goes out, so a client that retries at once does so once a second. */
const REFUSAL_DELAY_MS = 1_000;
/**
 * Frames an unregistered circuit may have waiting for the pace: ws still hands over what it
 * had read when the socket was paused; a circuit with more than this is flooding.
 */
const MAX_HELD_FRAMES = 16;
/** The register deadline of a circuit is drawn from [1, 1 + this] × registerTimeoutMs. */
const DEADLINE_SPREAD = 0.25;

export const CIRCUIT_PATH = '/v1/circuit';

/** The request bucket holds this many seconds of `maxRequestsPerSecond`. */
const REQUEST_BURST_SECONDS = 5;

function jobParams(job: Job): JobParams {
  return {
    jobId: job.jobId,
    prevhash: job.prevhash,
    coinb1: job.coinb1,
    coinb2: job.coinb2,
    merkleBranch: job.merkleBranch,
    version: job.version,
    nbits: job.nbits,
    ntime: job.ntime,
    clean: job.clean,
  };
}

export class CircuitConnector {
  private readonly wss: WebSocketServer;
  private readonly limits: CircuitLimits;
  private readonly log: Logger;
  private readonly connections = new Set<CircuitConnection>();
  /** Open and not registered: what `maxUnregistered` caps. */
  private readonly unregistered = new Set<CircuitConnection>();
  private refusedUnregistered = 0;
  private refusedFull = 0;
  private registerTimeouts = 0;
  /** The shared pace of handshakes and of frames from unregistered circuits. */
  private readonly unregisteredPace: PacedQueue;
  /** Upgrades refused at the cap, waiting for their 503. */
  private readonly refusals: SlowRefusals;
  /** Upgrades waiting for a unit of the pace (paused); they count against `maxUnregistered`. */
  private readonly upgrading = new Set<Duplex>();
  /** A job goes to every client as the same bytes: encode it once. */
  private readonly encodedJobs = new WeakMap<Job, string>();
  /** …and frame it once: server frames are unmasked, so the frame is the same for all. */
  private readonly framedJobs = new WeakMap<Job, Buffer>();

  readonly tickets: TicketService | null;

  constructor(
    private readonly stratifier: Stratifier,
    options: {
      limits?: Partial<CircuitLimits>;
      logger?: Logger;
      tickets?: TicketService;
      /** Pace of new and unregistered circuits; default at maxUnregisteredRequestsPerSecond. */
      unregisteredPace?: PacedQueue;
    } = {},
  ) {
    this.limits = { ...DEFAULT_CIRCUIT_LIMITS, ...options.limits };
    this.tickets = options.tickets ?? null;
    this.log = options.logger ?? silentLogger;
    this.wss = webSocketEndpoint(this.limits.maxFrameBytes);
    this.unregisteredPace =
      options.unregisteredPace ??
      new PacedQueue({ perSecond: this.limits.maxUnregisteredRequestsPerSecond });
    this.refusals = new SlowRefusals({
      delayMs: REFUSAL_DELAY_MS,
      max: this.limits.maxUnregistered,
    });
  }

  get size(): number {
    return this.connections.size;
  }

  counts(): CircuitCounts {
    return {
      unregistered: this.unregistered.size,
      refusedUnregistered: this.refusedUnregistered,
      registerTimeouts: this.registerTimeouts,
      refusedFull: this.refusedFull,
      waiting: this.unregisteredPace.queued,
    };
  }

  /**
   * Take over an HTTP upgrade to /v1/circuit (the upgrade router calls this). At the cap on
   * unregistered circuits the upgrade is answered 503 with Retry-After, which costs less than
   * a WebSocket handshake and a close, and the answer goes out a second late (SlowRefusals).
   * Without verifyClient or compression ws completes the upgrade synchronously, so concurrent
   * upgrades cannot overtake the count.
   */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (this.unregistered.size + this.upgrading.size >= this.limits.maxUnregistered) {
      this.refusedUnregistered += 1;
      this.refusals.refuse(socket, UNREGISTERED_REFUSAL);
      return;
    }
    // A new circuit's handshake takes a unit of the unregistered pace too, so that circuits
    // freed all at once (a crowd closed at its register deadline) come back spread out.
    if (this.unregisteredPace.tryNow()) {
      this.wss.handleUpgrade(request, socket, head, (ws) => this.accept(ws, socket));
      return;
    }
    this.upgrading.add(socket);
    socket.on('error', () => {}); // a peer resetting while it waits is not our error
    socket.pause();
    this.unregisteredPace.enqueue(() => {
      this.upgrading.delete(socket);
      if (socket.destroyed) return;
      socket.resume(); // ws only adds its listeners; a paused socket would stay paused
      this.wss.handleUpgrade(request, socket, head, (ws) => this.accept(ws, socket));
    });
  }

  /** Serve /v1/circuit on `server` when it is the only WebSocket endpoint (tests). */
  attach(server: Server): void {
    routeUpgrades(server, new Map([[CIRCUIT_PATH, this.handleUpgrade.bind(this)]]));
  }

  encodeJob(job: Job): string {
    let text = this.encodedJobs.get(job);
    if (text === undefined) {
      text = encodeNotification('mining.job', jobParams(job));
      this.encodedJobs.set(job, text);
    }
    return text;
  }

  /** The job's complete WebSocket text frame (RFC 6455 §5.2), built once per job. */
  frameJob(job: Job): Buffer {
    let frame = this.framedJobs.get(job);
    if (frame === undefined) {
      frame = textFrame(this.encodeJob(job));
      this.framedJobs.set(job, frame);
    }
    return frame;
  }

  /** `socket`: the one ws was set up on; with it, jobs are written as pre-built frames. */
  accept(ws: WebSocket, socket: Duplex | null = null): void {
    const connection = new CircuitConnection(
      ws,
      socket,
      this.stratifier,
      this,
      this.limits,
      this.log,
    );
    this.connections.add(connection);
    this.unregistered.add(connection);
    ws.once('close', () => {
      this.connections.delete(connection);
      this.unregistered.delete(connection);
    });
  }

  /** A circuit registered: it no longer counts against `maxUnregistered`. */
  registered(connection: CircuitConnection): void {
    this.unregistered.delete(connection);
  }

  /** mining.register at the stratifier; a refusal for want of places is counted (37). */
  register(connection: CircuitConnection, mode: ClientMode): ReturnType<Stratifier['register']> {
    try {
      return this.stratifier.register(connection, mode);
    } catch (err) {
      if (err instanceof RelayFullError) this.refusedFull += 1;
      throw err;
    }
  }

  /** A circuit missed the register deadline and is being closed. */
  timedOut(): void {
    this.registerTimeouts += 1;
  }

  /** A unit of the unregistered circuits' pace now, if nobody is waiting for one. */
  admitNow(): boolean {
    return this.unregisteredPace.tryNow();
  }

  /** `run` once a unit of the pace is free for it, in turn; returns a cancel. */
  whenAdmitted(run: () => void): () => void {
    return this.unregisteredPace.enqueue(run);
  }

  /** Close every circuit (shutdown). */
  close(): void {
    for (const connection of this.connections) connection.shutdown();
    // Paused, these would not even see their peer leave: nothing else ends them.
    for (const socket of this.upgrading) socket.destroy();
    this.upgrading.clear();
    this.unregisteredPace.close();
    this.refusals.close();
    this.wss.close();
  }
}

class CircuitConnection implements ClientChannel {
  private session: ClientSession | null = null;
  private invalidFrames = 0;
  private readonly requests: TokenBucket;
  private alive = true;
  private readonly pinger: NodeJS.Timeout;
  private readonly registerTimer: NodeJS.Timeout;
  /** Requests being answered; a circuit past its register deadline closes when none is left. */
  private inFlight = 0;
  private expired = false;
  /** Frames waiting for the unregistered circuits' pace; the socket is paused meanwhile. */
  private readonly held: { data: unknown; isBinary: boolean }[] = [];
  private cancelWait: (() => void) | null = null;

  constructor(
    private readonly ws: WebSocket,
    private readonly socket: Duplex | null,
    private readonly stratifier: Stratifier,
    private readonly connector: CircuitConnector,
    private readonly limits: CircuitLimits,
    private readonly log: Logger,
  ) {
    this.requests = new TokenBucket({
      perSecond: limits.maxRequestsPerSecond,
      burstSeconds: REQUEST_BURST_SECONDS,
    });
    ws.on('message', (data, isBinary) => this.onFrame(data, isBinary));
    ws.on('pong', () => {
      this.alive = true;
    });
    ws.on('error', (err) => this.log.debug({ err: err.message }, 'circuit socket error'));
    ws.once('close', () => this.onClose());
    this.pinger = setInterval(() => this.ping(), limits.pingIntervalMs);
    // Up to a quarter later, drawn per circuit: a crowd of circuits opened together must not
    // all close (and come back) in the same instant.
    this.registerTimer = setTimeout(
      () => this.onRegisterDeadline(),
      limits.registerTimeoutMs * (1 + DEADLINE_SPREAD * Math.random()),
    );
  }

  // ---- ClientChannel: what the stratifier sends ------------------------------------------

  sendJob(job: Job): void {
    if (!this.socket) return this.send(this.connector.encodeJob(job));
    if (!this.writable()) return;
    // One write of the shared frame instead of ws.send's per-client framing, cork and
    // writev. Safe to interleave with ws's own writes: without permessage-deflate (off) or
    // Blob payloads (never sent) ws writes each frame synchronously, so order is kept, and
    // ws.bufferedAmount still counts these bytes (it reads the socket's writable length).
    this.socket.write(this.connector.frameJob(job));
  }

  sendDifficulty(difficulty: number): void {
    this.send(encodeNotification('mining.set_difficulty', { difficulty }));
  }

  sendExtranonce(extranonce1: string, extranonce2Size: number): void {
    this.send(encodeNotification('mining.set_extranonce', { extranonce1, extranonce2Size }));
  }

  sendVersionMask(mask: number | null): void {
    this.send(
      encodeNotification('mining.set_version_mask', {
        versionMask: mask === null ? null : u32ToHex(mask),
      }),
    );
  }

  sendUpstreamState(live: boolean, message: string): void {
    this.send(encodeNotification('relay.state', { upstream: live ? 'live' : 'down', message }));
  }

  close(reason: string): void {
    this.session = null; // the stratifier already dropped it
    this.ws.close(WsCloseCode.tryAgainLater, reason.slice(0, 120));
  }

  shutdown(): void {
    this.closeNow(WsCloseCode.goingAway, 'relay shutting down');
  }

  // ---- incoming -----------------------------------------------------------------------------

  private send(text: string): void {
    if (this.writable()) this.ws.send(text);
  }

  private writable(): boolean {
    if (this.ws.readyState !== this.ws.OPEN) return false;
    // A reader that does not keep up would make us buffer without bound: drop it instead.
    if (this.ws.bufferedAmount > this.limits.maxBufferedBytes) {
      this.ws.terminate();
      return false;
    }
    return true;
  }

  /**
   * No register in time: closed, but a redemption being answered is answered first (its
   * ticket may be spent already, and its grant must reach the client); frames after the
   * deadline are not looked at.
   */
  private onRegisterDeadline(): void {
    if (this.session || this.expired) return;
    this.expired = true;
    this.connector.timedOut();
    if (this.inFlight === 0) {
      this.closeNow(WsCloseCode.policyViolation, 'register timeout');
      return;
    }
    // Read on, so that the answer and then the close go out the usual way.
    this.dropHeld();
    this.ws.resume();
  }

  /**
   * A circuit with frames waiting for the pace (its socket paused, more unread behind them) is
   * dropped at once: reading what it sent only to throw it away would cost more than it.
   */
  private closeNow(code: WsCloseCode, reason: string): void {
    if (this.held.length > 0) {
      this.dropHeld();
      this.ws.terminate();
      return;
    }
    this.ws.close(code, reason);
  }

  /**
   * Frames of an unregistered circuit take a unit of the pace all unregistered circuits share
   * (in order: once one waits, the next ones wait behind it); registered circuits never wait.
   */
  private onFrame(data: unknown, isBinary: boolean): void {
    // Closing (or past the deadline): what was still in the read buffer is not looked at.
    if (this.expired || this.ws.readyState !== this.ws.OPEN) return;
    if (this.held.length > 0 || (this.session === null && !this.connector.admitNow())) {
      this.hold(data, isBinary);
      return;
    }
    this.handleFrame(data, isBinary);
  }

  private hold(data: unknown, isBinary: boolean): void {
    if (this.held.length >= MAX_HELD_FRAMES) {
      this.closeNow(WsCloseCode.policyViolation, 'too many requests');
      return;
    }
    this.held.push({ data, isBinary });
    if (this.held.length > 1) return;
    this.ws.pause();
    this.cancelWait = this.connector.whenAdmitted(() => this.release());
  }

  /** The pace has a unit for this circuit: its oldest held frame goes on. */
  private release(): void {
    this.cancelWait = null;
    const next = this.held.shift();
    if (next === undefined) return;
    this.handleFrame(next.data, next.isBinary);
    if (this.held.length > 0) {
      this.cancelWait = this.connector.whenAdmitted(() => this.release());
    } else if (!this.expired) {
      this.ws.resume();
    }
  }

  /** Forget the held frames (closing). */
  private dropHeld(): void {
    this.cancelWait?.();
    this.cancelWait = null;
    this.held.length = 0;
  }

  private handleFrame(data: unknown, isBinary: boolean): void {
    if (!this.requests.take()) {
      this.ws.close(WsCloseCode.policyViolation, 'too many requests');
      return;
    }
    if (isBinary) {
      this.invalid(null, RpcErrorCode.invalidRequest, 'binary frames are not accepted');
      return;
    }
    const text = Buffer.isBuffer(data) ? data.toString('utf8') : String(data);
    const frame = parseFrame(text, this.limits.maxFrameBytes);
    switch (frame.kind) {
      case 'request':
        this.inFlight += 1;
        void this.onRequest(frame.message).finally(() => {
          this.inFlight -= 1;
          if (this.expired && this.inFlight === 0) {
            this.ws.close(WsCloseCode.policyViolation, 'register timeout');
          }
        });
        return;
      case 'invalid':
        this.invalid(frame.id, frame.error.code, frame.error.message);
        return;
      default:
        // Clients have nothing to notify and never answer us.
        this.invalid(null, RpcErrorCode.invalidRequest, 'expected a request with an id');
    }
  }

  private async onRequest(request: RpcRequest): Promise<void> {
    const { id, method } = request;
    if (!isClientMethod(method)) {
      this.invalid(id, RpcErrorCode.methodNotFound, `unknown method ${method.slice(0, 64)}`);
      return;
    }
    const parsed = clientRequests[method].params.safeParse(request.params ?? {});
    if (!parsed.success) {
      this.invalid(id, RpcErrorCode.invalidParams, describeIssue(parsed.error));
      return;
    }
    try {
      this.reply(id, await this.dispatch(method, parsed.data));
      if (method === 'mining.register' && this.session) {
        this.stratifier.sendCurrentWork(this.session);
      }
    } catch (err) {
      if (err instanceof RpcError) {
        this.send(encodeError(id, err));
        return;
      }
      this.log.error(
        { err: err instanceof Error ? err.message : String(err), method },
        'circuit request failed',
      );
      this.send(encodeError(id, { code: RpcErrorCode.internalError, message: 'internal error' }));
    }
  }

  /** One handler per method; params are already validated by the method's schema. */
  private async dispatch(method: ClientMethod, params: unknown): Promise<unknown> {
    const tickets = this.connector.tickets;
    switch (method) {
      case 'mining.register': {
        const { mode } = params as RegisterParams;
        if (this.session) throw new RpcError(RpcErrorCode.invalidRequest, 'already registered');
        const { session, outcome } = this.connector.register(this, mode);
        this.session = session;
        clearTimeout(this.registerTimer);
        this.connector.registered(this);
        return {
          algorithm: outcome.algorithm,
          extranonce1: outcome.extranonce1,
          extranonce2Size: outcome.extranonce2Size,
          difficulty: outcome.difficulty,
          versionMask: outcome.versionMask === null ? null : u32ToHex(outcome.versionMask),
          ticket: mode === 'tickets' ? (tickets?.terms() ?? null) : null,
        };
      }
      case 'mining.submit':
        return this.stratifier.submit(this.registered(), params as SubmitParams);
      case 'ticket.open': {
        // An open Abe–Okamoto session holds one of the few (key, day) slots for up to its TTL,
        // so it costs the circuit a request per second it may stay open (docs/design.md §6.2).
        const session = this.registered();
        const tickets = this.ticketService();
        if (!this.requests.take(this.limits.ticketSessionCost)) {
          throw new RpcError(RpcErrorCode.issuerBusy, 'too many requests for a ticket session', {
            retryAfter: Math.ceil(this.limits.ticketSessionCost / this.limits.maxRequestsPerSecond),
          });
        }
        return tickets.open(session);
      }
      case 'ticket.issue':
        return this.ticketService().issue(this.registered(), params as TicketIssueParams);
      case 'ticket.finish': {
        const { session, e } = params as TicketFinishParams;
        return this.ticketService().finish(this.registered(), session, e);
      }
      case 'ticket.redeem':
        // No registration needed: a ticket is spent over a fresh circuit (unlinkability).
        return this.ticketService().redeem(
          (params as TicketRedeemParams).ticket,
          (params as TicketRedeemParams).grant,
        );
    }
  }

  private registered(): ClientSession {
    if (!this.session) throw new RpcError(RpcErrorCode.notRegistered, 'not registered');
    return this.session;
  }

  private ticketService(): TicketService {
    const tickets = this.connector.tickets;
    if (!tickets) throw new RpcError(RpcErrorCode.methodNotFound, 'this relay issues no tickets');
    return tickets;
  }

  private reply(id: RpcId, result: unknown): void {
    this.send(encodeResult(id, result));
  }

  private invalid(id: RpcId | null, code: number, message: string): void {
    this.send(encodeError(id, { code, message }));
    this.invalidFrames += 1;
    if (this.invalidFrames >= this.limits.maxInvalidFrames) {
      this.ws.close(WsCloseCode.policyViolation, 'too many invalid frames');
    }
  }

  private ping(): void {
    if (!this.alive) {
      this.ws.terminate();
      return;
    }
    this.alive = false;
    this.ws.ping();
  }

  private onClose(): void {
    clearInterval(this.pinger);
    clearTimeout(this.registerTimer);
    this.cancelWait?.();
    this.held.length = 0;
    if (this.session) {
      this.connector.tickets?.circuitClosed(this.session);
      this.stratifier.close(this.session);
    }
    this.session = null;
  }
}

/** A final, unmasked text frame: the bytes ws.send(text) puts on the wire from a server. */
function textFrame(text: string): Buffer {
  const payload = Buffer.from(text, 'utf8');
  const n = payload.length;
  const header = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(header + n);
  frame[0] = 0x81; // FIN, opcode 1 (text)
  if (n < 126) frame[1] = n;
  else if (n < 65536) {
    frame[1] = 126;
    frame.writeUInt16BE(n, 2);
  } else {
    frame[1] = 127;
    frame.writeBigUInt64BE(BigInt(n), 2);
  }
  payload.copy(frame, header);
  return frame;
}
