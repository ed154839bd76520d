import { type IncomingMessage, type Server, STATUS_CODES } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { RawData, WebSocket, WebSocketServer } from 'ws';
import { type Logger, silentLogger } from '../log.js';
import { routeUpgrades } from '../lib/upgrade-router.js';
import { webSocketEndpoint } from '../lib/ws-endpoint.js';
import { WsCloseCode } from '../lib/ws-close.js';
import { type GrantBook, type GrantEntry, grantId } from '../tickets/grant-book.js';
import {
  DEFAULT_EXIT_POLICY,
  type Destination,
  ExitChecker,
  type ExitPolicy,
  type ExitRefusal,
  parseDestination,
  type Resolver,
  systemResolver,
} from './exit-policy.js';
import { type Shaper, UnshapedShaper } from './shaper.js';
import { drained, Pump, type PumpSink } from './tunnel-pump.js';

/**
 * The priority tunnel (docs/design.md §5, §8): WebSocket `/v1/tunnel?to=host:port`, one WebSocket =
 * one TCP stream, binary frames both ways. A grant token in `authorization: Priority <token>`
 * puts the stream in the paid class until the grant expires; then it carries on, free.
 * Every chunk waits for the shaper before it is forwarded, and a direction whose sink or
 * shaper is not ready pauses its source, so a stream never holds more than about one frame
 * plus `maxBufferedBytes` per direction, whatever the peers do.
 *
 * Nothing here logs a destination or a client address: the relay learns where anonymous
 * clients go only as counts.
 */

export const TUNNEL_PATH = '/v1/tunnel';

export interface TunnelLimits {
  /** Open streams per relay; more upgrades are answered 503. */
  maxStreams: number;
  /** Largest WebSocket frame accepted from a client (ws closes with 1009 above it). */
  maxFrameBytes: number;
  /** Bytes a sink (the client's WebSocket, the destination's TCP socket) may have queued
   *  before the other side is paused. */
  maxBufferedBytes: number;
  /** A stream with no bytes moving either way for this long is closed. */
  idleTimeoutMs: number;
  connectTimeoutMs: number;
}

export const DEFAULT_TUNNEL_LIMITS: TunnelLimits = {
  maxStreams: 256,
  maxFrameBytes: 64 * 1024,
  maxBufferedBytes: 256 * 1024,
  idleTimeoutMs: 5 * 60_000,
  connectTimeoutMs: 10_000,
};

export interface TunnelOptions {
  /** Where redeemed grants are looked up; without it every token is refused. */
  grants?: GrantBook | null;
  policy?: Partial<ExitPolicy>;
  resolve?: Resolver;
  shaper?: Shaper;
  limits?: Partial<TunnelLimits>;
  logger?: Logger;
  /** Unix seconds, for grant expiry. */
  now?: () => number;
  /**
   * In a family of relays sharing one database: puts into `grants` what the database holds of
   * a grant this instance does not hold live (made or topped up by another instance). Without
   * it the book is all there is (a single relay).
   */
  fetchGrant?: (id: string) => Promise<void>;
}

export interface TunnelCounts {
  active: number;
  opened: number;
  /** Streams that started with a live grant. */
  paid: number;
  /** Paid streams whose grant expired while they ran (they went on in the free class). */
  downgraded: number;
  refusedBusy: number;
  refusedRequest: number;
  refusedGrant: number;
  refusedPort: number;
  refusedAddress: number;
  refusedName: number;
  connectFailed: number;
  bytesUp: number;
  bytesDown: number;
}

/** Once the client has gone, how long its last bytes may take to reach the destination. */
const CLOSE_GRACE_MS = 5_000;

/**
 * The one close reason for every exit-policy refusal (port, address, unresolved name): a
 * client must not learn how names resolve at the relay or which rule failed. The reason is
 * counted (TunnelCounts) and logged at debug level, never sent.
 */
export const EXIT_REFUSED = 'destination not allowed';

const REFUSAL_COUNT: Record<ExitRefusal, keyof TunnelCounts> = {
  'port not allowed': 'refusedPort',
  'address not allowed': 'refusedAddress',
  'name not resolved': 'refusedName',
};

const TOKEN = /^Priority ([A-Za-z0-9_-]{1,128})$/i;

/**
 * Grant fetches from the family's database in flight at once: a flood of made-up tokens costs
 * the database at most this many queries at a time; past it, requests get 503.
 */
const MAX_GRANT_FETCHES = 32;

export class TunnelConnector {
  readonly limits: TunnelLimits;
  readonly checker: ExitChecker;
  readonly shaper: Shaper;
  readonly grants: GrantBook | null;
  readonly now: () => number;
  readonly log: Logger;
  readonly tally: TunnelCounts = {
    active: 0,
    opened: 0,
    paid: 0,
    downgraded: 0,
    refusedBusy: 0,
    refusedRequest: 0,
    refusedGrant: 0,
    refusedPort: 0,
    refusedAddress: 0,
    refusedName: 0,
    connectFailed: 0,
    bytesUp: 0,
    bytesDown: 0,
  };
  private readonly wss: WebSocketServer;
  private readonly streams = new Set<TunnelStream>();
  private readonly fetchGrant: ((id: string) => Promise<void>) | undefined;
  private fetching = 0;

  constructor(options: TunnelOptions = {}) {
    this.limits = { ...DEFAULT_TUNNEL_LIMITS, ...options.limits };
    this.checker = new ExitChecker(
      { ...DEFAULT_EXIT_POLICY, ...options.policy },
      options.resolve ?? systemResolver,
    );
    this.shaper = options.shaper ?? new UnshapedShaper();
    this.grants = options.grants ?? null;
    this.now = options.now ?? (() => Date.now() / 1000);
    this.fetchGrant = options.fetchGrant;
    this.log = options.logger ?? silentLogger;
    this.wss = webSocketEndpoint(this.limits.maxFrameBytes);
  }

  get size(): number {
    return this.streams.size;
  }

  counts(): Readonly<TunnelCounts> {
    return { ...this.tally, active: this.streams.size };
  }

  /**
   * Open streams by the leaf class their next bytes go to (classified as each chunk is, so a
   * stream whose grant expired counts as free). Classes without a stream are left out.
   */
  streamsByClass(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const stream of this.streams) {
      const leaf = stream.leaf();
      counts[leaf] = (counts[leaf] ?? 0) + 1;
    }
    return counts;
  }

  /** Bytes the relay holds for all streams: queued chunks plus both sockets' write buffers. */
  bufferedBytes(): number {
    let total = 0;
    for (const stream of this.streams) total += stream.bufferedBytes();
    return total;
  }

  /** Take over an HTTP upgrade to /v1/tunnel (the upgrade router calls this). */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => {}); // a peer resetting mid-handshake is not our error
    if (this.streams.size >= this.limits.maxStreams) {
      this.tally.refusedBusy++;
      return refuse(socket, 503, 'too many streams');
    }
    const query = new URLSearchParams((request.url ?? '').split('?')[1] ?? '');
    const to = query.get('to');
    const destination = to === null ? null : parseDestination(to);
    if (!destination) {
      this.tally.refusedRequest++;
      return refuse(socket, 400, 'expected ?to=host:port');
    }
    // The stream keeps the grant's id (the token's hash), not the token (src/tickets/grant-book.ts).
    const authorization = request.headers.authorization;
    if (authorization === undefined) return this.upgrade(request, socket, head, destination, null);
    const token = TOKEN.exec(authorization)?.[1];
    const grant = token === undefined ? null : grantId(token);
    // One answer for every failure: a probe learns nothing about which tokens exist.
    if (grant === null) return this.refuseGrant(socket);
    if (this.grant(grant) !== undefined) {
      return this.upgrade(request, socket, head, destination, grant);
    }
    if (this.fetchGrant === undefined) return this.refuseGrant(socket);
    if (this.fetching >= MAX_GRANT_FETCHES) {
      this.tally.refusedBusy++;
      return refuse(socket, 503, 'too many streams');
    }
    void this.refreshGrant(grant).then((entry) => {
      if (socket.destroyed) return;
      if (entry === undefined) return this.refuseGrant(socket);
      // Counted again: other streams may have opened while the database answered.
      if (this.streams.size >= this.limits.maxStreams) {
        this.tally.refusedBusy++;
        return refuse(socket, 503, 'too many streams');
      }
      this.upgrade(request, socket, head, destination, grant);
    });
  }

  /**
   * The grant after asking the family's database (fetchGrant) for what other instances paid
   * into it; the book's view alone for a single relay or when the database does not answer.
   */
  async refreshGrant(id: string): Promise<Readonly<GrantEntry> | undefined> {
    if (this.fetchGrant === undefined) return this.grant(id);
    this.fetching++;
    try {
      await this.fetchGrant(id);
    } catch (err) {
      // The database is down: what this instance holds still counts.
      this.log.debug(
        { err: err instanceof Error ? err.message : String(err) },
        'grant fetch failed',
      );
    } finally {
      this.fetching--;
    }
    return this.grant(id);
  }

  /** Whether grants are also looked up in a family's shared database (fetchGrant). */
  get fetchesGrants(): boolean {
    return this.fetchGrant !== undefined;
  }

  private refuseGrant(socket: Duplex): void {
    this.tally.refusedGrant++;
    refuse(socket, 401, 'invalid or expired grant');
  }

  private upgrade(
    request: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    destination: Destination,
    grant: string | null,
  ): void {
    // Without verifyClient or compression ws completes the upgrade synchronously, so the
    // stream count checked before cannot be overtaken by a concurrent upgrade.
    this.wss.handleUpgrade(request, socket, head, (ws) => {
      this.accept(ws, socket, destination, grant);
    });
  }

  /** Serve /v1/tunnel on `server` when it is the only WebSocket endpoint (tests). */
  attach(server: Server): void {
    routeUpgrades(server, new Map([[TUNNEL_PATH, this.handleUpgrade.bind(this)]]));
  }

  /** The live grant of a grant id (`grantId(token)`), if any. */
  grant(id: string): Readonly<GrantEntry> | undefined {
    return this.grants?.find(id, this.now());
  }

  /** Close every stream (shutdown). */
  close(): void {
    for (const stream of this.streams) stream.fail(WsCloseCode.goingAway, 'relay shutting down');
    this.wss.close();
  }

  private accept(ws: WebSocket, socket: Duplex, to: Destination, grant: string | null): void {
    const stream = new TunnelStream(ws, socket, grant, this);
    this.streams.add(stream);
    this.tally.opened++;
    if (grant !== null) this.tally.paid++;
    ws.once('close', () => this.streams.delete(stream));
    void stream.open(to);
  }
}

function refuse(socket: Duplex, status: number, message: string): void {
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nConnection: close\r\n` +
      `Content-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(message)}\r\n\r\n${message}`,
  );
}

/** One tunnel: a client's WebSocket and the TCP connection it asked for. */
class TunnelStream {
  private tcp: Socket | null = null;
  private readonly idle: NodeJS.Timeout;
  /** client → destination */
  private readonly up: Pump;
  /** destination → client */
  private readonly down: Pump;

  constructor(
    private readonly ws: WebSocket,
    private readonly socket: Duplex,
    /** The grant's id (`grantId(token)`) while it is live; null for a free stream. */
    private grant: string | null,
    private readonly connector: TunnelConnector,
  ) {
    const { limits, tally } = connector;
    this.up = new Pump(
      ws,
      (bytes) => {
        tally.bytesUp += bytes;
        return this.shape(bytes);
      },
      (err) => this.fail(WsCloseCode.internalError, 'shaper failed', err),
    );
    this.down = new Pump(
      // The TCP socket does not exist yet; nothing is pushed downstream before it does.
      { pause: () => this.tcp?.pause(), resume: () => this.tcp?.resume() },
      (bytes) => {
        tally.bytesDown += bytes;
        return this.shape(bytes);
      },
      (err) => this.fail(WsCloseCode.internalError, 'shaper failed', err),
    );
    this.idle = setTimeout(
      () => this.fail(WsCloseCode.goingAway, 'idle timeout'),
      limits.idleTimeoutMs,
    );
    // Hold the client's bytes in the kernel until the destination is connected.
    this.up.hold();
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (!isBinary) return this.fail(WsCloseCode.unsupportedData, 'binary frames only');
      this.up.push(toBuffer(data));
    });
    ws.on('error', (err) => connector.log.debug({ err: err.message }, 'tunnel socket error'));
    ws.once('close', () => this.onClientClosed());
  }

  bufferedBytes(): number {
    return (
      this.up.buffered +
      this.down.buffered +
      (this.tcp?.writableLength ?? 0) +
      this.ws.bufferedAmount
    );
  }

  /** The class its next chunk goes to; reads the grant without counting a downgrade. */
  leaf(): string {
    const entry = this.grant === null ? null : (this.connector.grant(this.grant) ?? null);
    return this.connector.shaper.classify(entry);
  }

  async open(to: Destination): Promise<void> {
    const { checker, tally, limits } = this.connector;
    const decision = await checker.check(to.host, to.port);
    // Closed or closing (client gone, idle, shutdown) while DNS was answering.
    if (this.ws.readyState !== this.ws.OPEN) return;
    if (!decision.ok) {
      tally[REFUSAL_COUNT[decision.refusal]]++;
      // The reason stays here: no destination, no address, just which rule.
      this.connector.log.debug({ refusal: decision.refusal }, 'tunnel refused by exit policy');
      return this.fail(WsCloseCode.policyViolation, EXIT_REFUSED);
    }
    // The checked address, not the name: a second lookup could answer differently.
    const tcp = connect({ host: decision.address, port: to.port, family: decision.family });
    this.tcp = tcp;
    tcp.setNoDelay(true);
    const timer = setTimeout(() => {
      tcp.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' }));
    }, limits.connectTimeoutMs);
    tcp.once('connect', () => {
      clearTimeout(timer);
      this.down.start(this.clientSink());
      this.up.start(this.destinationSink(tcp));
    });
    tcp.on('data', (chunk: Buffer) => this.down.push(chunk));
    // The destination finished: deliver what is queued, then close the WebSocket normally.
    tcp.once('end', () => this.down.end());
    tcp.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (!this.down.started) tally.connectFailed++;
      this.fail(WsCloseCode.internalError, failure(err));
    });
    tcp.once('close', () => clearTimeout(timer));
  }

  /** End the stream with a close code; both sides are torn down, nothing more is sent. */
  fail(code: WsCloseCode, reason: string, err?: unknown): void {
    if (err !== undefined) {
      this.connector.log.warn({ err: err instanceof Error ? err.message : typeof err }, reason);
    }
    this.up.stop();
    this.down.stop();
    this.tcp?.destroy();
    this.closeClient(code, reason);
  }

  /** The client's close frame must be read for the handshake to finish: unpause first. */
  private closeClient(code: WsCloseCode, reason: string): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    this.ws.resume();
    this.ws.close(code, reason);
  }

  /**
   * Re-classified per chunk, so an expired grant drops the stream to the free class at once. In
   * a family the database is asked first, once per expiry: another instance may have topped the
   * grant up.
   */
  private shape(bytes: number): Promise<void> | void {
    this.idle.refresh();
    let entry: Readonly<GrantEntry> | null = null;
    if (this.grant !== null) {
      entry = this.connector.grant(this.grant) ?? null;
      if (entry === null) {
        const id = this.grant;
        this.grant = null;
        if (!this.connector.fetchesGrants) {
          this.connector.tally.downgraded++;
          return this.shape(bytes);
        }
        return this.connector.refreshGrant(id).then((refreshed) => {
          if (refreshed === undefined) this.connector.tally.downgraded++;
          else this.grant = id;
          return this.shape(bytes);
        });
      }
    }
    const { shaper } = this.connector;
    return shaper.request(shaper.classify(entry), bytes);
  }

  private clientSink(): PumpSink {
    const { ws, socket } = this;
    const limit = this.connector.limits.maxBufferedBytes;
    return {
      write: (chunk) => ws.send(chunk, { binary: true }),
      // bufferedAmount is what the socket under ws has queued; its 'drain' is ours.
      settle: () => (ws.bufferedAmount > limit ? drained(socket) : null),
      end: () => {
        this.up.stop(); // the destination has gone: nothing the client sends can arrive
        this.closeClient(WsCloseCode.normal, 'destination closed');
      },
    };
  }

  private destinationSink(tcp: Socket): PumpSink {
    const limit = this.connector.limits.maxBufferedBytes;
    return {
      write: (chunk) => tcp.write(chunk),
      settle: () => (tcp.writableLength > limit ? drained(tcp) : null),
      end: () => tcp.end(),
    };
  }

  private onClientClosed(): void {
    clearTimeout(this.idle);
    this.down.stop();
    const tcp = this.tcp;
    if (!tcp) return;
    if (tcp.connecting) {
      tcp.destroy();
      return;
    }
    // Deliver what the client sent before closing, then half-close; keep reading (and
    // discarding) so the destination's FIN is seen and the socket can close.
    this.up.end();
    tcp.resume();
    setTimeout(() => tcp.destroy(), CLOSE_GRACE_MS).unref();
  }
}

function failure(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ETIMEDOUT':
      return 'connect timeout';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'destination unreachable';
    case 'ECONNRESET':
    case 'EPIPE':
      return 'connection reset';
    default:
      return 'connection failed';
  }
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  return Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
}
