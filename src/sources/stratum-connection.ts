import { EventEmitter } from 'node:events';
import { connect as connectTcp, isIP, type Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import {
  type Call,
  encodeError,
  encodeRequest,
  encodeResult,
  LineDecoder,
  parseMessage,
  type ResponseOutcome,
  type StratumError,
  type StratumId,
  type StratumMessage,
} from '../stratum/index.js';
import type { StratumEndpoint } from './stratum-endpoint.js';

/**
 * One TCP/TLS connection to a pool: framing, parsing, and request/response correlation.
 * Answers may arrive in any order, so each request waits on its own id with its own timeout.
 * Whatever ends the connection (pool close, socket error, garbage, our close), every pending
 * request settles as `closed` exactly once and `close` is emitted exactly once.
 */

export interface TlsOptions {
  /** PEM of the CA (or the self-signed certificate) to trust instead of the system store. */
  ca?: string;
  /** Defaults to true; false accepts any certificate (testing only). */
  rejectUnauthorized?: boolean;
}

export interface ConnectOptions {
  endpoint: StratumEndpoint;
  tls?: TlsOptions;
  connectTimeoutMs: number;
  signal?: AbortSignal;
  logger?: Logger;
}

export type RequestResult =
  | { kind: 'answer'; outcome: ResponseOutcome }
  | { kind: 'timeout' }
  | { kind: 'closed'; reason: string };

/** Calls from the pool (requests, notifications, unknown methods). */
export type IncomingCall = Exclude<StratumMessage, { kind: 'response' }>;

export interface StratumConnectionEvents {
  call: [IncomingCall];
  close: [reason: string];
}

interface Pending {
  resolve: (result: RequestResult) => void;
  /** Null for a request that waits as long as the connection lives. */
  timer: NodeJS.Timeout | null;
}

export class StratumConnection extends EventEmitter<StratumConnectionEvents> {
  private readonly decoder = new LineDecoder();
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closeReason: string | null = null;
  private silenceTimer: NodeJS.Timeout | null = null;

  private constructor(
    private readonly socket: Socket,
    private readonly logger: Logger,
  ) {
    super();
    this.decoder.on('line', (line) => this.onLine(line));
    this.decoder.on('error', (error) => this.close(`dropped: ${error.message}`));
    socket.on('data', (chunk: Buffer) => this.decoder.push(chunk));
    socket.on('error', (error) => this.close(`socket error: ${error.message}`));
    socket.on('close', () => this.close('connection closed by pool'));
  }

  /** Resolves once connected (TLS: once the handshake verified the certificate). */
  static open(options: ConnectOptions): Promise<StratumConnection> {
    const { endpoint, tls, signal } = options;
    const logger = options.logger ?? silentLogger;
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(new Error('aborted'));
        return;
      }
      const socket = endpoint.tls
        ? connectTls({
            host: endpoint.host,
            port: endpoint.port,
            // SNI must not be an IP address (RFC 6066).
            ...(isIP(endpoint.host) === 0 ? { servername: endpoint.host } : {}),
            ...(tls?.ca !== undefined ? { ca: tls.ca } : {}),
            rejectUnauthorized: tls?.rejectUnauthorized ?? true,
          })
        : connectTcp({ host: endpoint.host, port: endpoint.port });
      const fail = (reason: string) => {
        cleanup();
        socket.destroy();
        reject(new Error(reason));
      };
      const onError = (error: Error) => fail(error.message);
      const onAbort = () => fail('aborted');
      const timer = setTimeout(
        () => fail(`no connection within ${options.connectTimeoutMs} ms`),
        options.connectTimeoutMs,
      );
      const onConnect = () => {
        cleanup();
        socket.setNoDelay(true);
        resolve(new StratumConnection(socket, logger));
      };
      const cleanup = () => {
        clearTimeout(timer);
        socket.off('error', onError);
        socket.off(endpoint.tls ? 'secureConnect' : 'connect', onConnect);
        signal?.removeEventListener('abort', onAbort);
      };
      socket.once('error', onError);
      socket.once(endpoint.tls ? 'secureConnect' : 'connect', onConnect);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  get closed(): boolean {
    return this.closeReason !== null;
  }

  /**
   * Send a request and wait for its answer, at most `timeoutMs`, or with `null` for as long as
   * the connection lives (an optional request whose late answer is still wanted). Never rejects.
   */
  request(call: Call, timeoutMs: number | null): Promise<RequestResult> {
    if (this.closeReason !== null) {
      return Promise.resolve({ kind: 'closed', reason: this.closeReason });
    }
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer =
        timeoutMs === null
          ? null
          : setTimeout(() => {
              this.pending.delete(id);
              resolve({ kind: 'timeout' });
            }, timeoutMs);
      this.pending.set(id, { resolve, timer });
      this.socket.write(encodeRequest(id, call));
    });
  }

  /**
   * Call `onSilent` once when nothing at all has come from the pool for `ms`. Pools send a job
   * at least every minute or so; a connection that stays silent longer is dead even when TCP
   * says otherwise (cpuminer gives up on a pool after 120 s without a line).
   */
  watchSilence(ms: number, onSilent: () => void): void {
    if (this.closeReason !== null) return;
    if (this.silenceTimer !== null) clearTimeout(this.silenceTimer);
    this.silenceTimer = setTimeout(() => {
      this.silenceTimer = null;
      onSilent();
    }, ms);
  }

  reply(id: StratumId, result: unknown): void {
    if (this.closeReason === null) this.socket.write(encodeResult(id, result));
  }

  replyError(id: StratumId, error: StratumError): void {
    if (this.closeReason === null) this.socket.write(encodeError(id, error));
  }

  close(reason: string): void {
    if (this.closeReason !== null) return;
    this.closeReason = reason;
    this.socket.destroy();
    if (this.silenceTimer !== null) clearTimeout(this.silenceTimer);
    this.silenceTimer = null;
    for (const { resolve, timer } of this.pending.values()) {
      if (timer !== null) clearTimeout(timer);
      resolve({ kind: 'closed', reason });
    }
    this.pending.clear();
    this.emit('close', reason);
  }

  private onLine(line: string): void {
    if (this.closeReason !== null) return;
    this.silenceTimer?.refresh();
    const parsed = parseMessage(line);
    if (!parsed.ok) {
      // A pool that sends garbage cannot be trusted to frame the next line correctly either.
      this.close(`dropped: garbage from pool (${parsed.error})`);
      return;
    }
    const message = parsed.value;
    if (message.kind !== 'response') {
      this.emit('call', message);
      return;
    }
    // Our ids are integers; tolerate pools that echo them back as strings.
    const id = typeof message.id === 'string' ? Number(message.id) : message.id;
    const pending = typeof id === 'number' ? this.pending.get(id) : undefined;
    if (pending === undefined || typeof id !== 'number') {
      this.logger.debug({ id: message.id }, 'answer to no pending request (late or unknown id)');
      return;
    }
    this.pending.delete(id);
    if (pending.timer !== null) clearTimeout(pending.timer);
    pending.resolve({ kind: 'answer', outcome: message.outcome });
  }
}
