import type { Agent } from 'node:http';
import { type AddressInfo, createServer, isIP, type Socket } from 'node:net';
import { pipeline } from 'node:stream';
import { type Logger, silentLogger } from '../log.js';
import { type RedeemOptions, redeemFromWallet } from './redeem.js';
import { openTunnel, TunnelError, type TunnelFailure } from './tunnel-client.js';
import type { Wallet } from './wallet.js';

/**
 * `powbridge mine --socks-listen`: a local SOCKS5 server (RFC 1928) whose CONNECT streams go
 * through the relay's priority tunnel. No authentication, CONNECT only; IPv4, IPv6 and domain
 * names (the relay resolves names, so no DNS query leaves this host). Each stream carries the
 * current grant token, if any; a GrantKeeper redeems wallet tickets while streams are active
 * so new streams keep the paid class, and tops the grant up to the tier the user asked for. A
 * grant `powbridge tickets redeem --for-socks` kept in the wallet is used before any ticket.
 *
 * Nothing here logs a destination or a local client's address.
 */

export interface GrantLike {
  token: string;
  /** Unix seconds. */
  expiresAt: number;
}

export interface GrantKeeperOptions {
  /**
   * Spend one ticket (e.g. `walletRedeemer`): for a fresh grant, or with `topUp`, the token
   * of the live grant, into that grant. The relay answers a top-up with the same token, or
   * with a new grant when it no longer knows the token. Null when no ticket could be spent.
   */
  redeem: (topUp?: string) => Promise<GrantLike | null>;
  /** Redeem by itself while streams are active (default true). */
  autoRedeem?: boolean;
  /**
   * Grants obtained elsewhere and handed over (`powbridge tickets redeem --for-socks` keeps
   * one in the wallet, `walletGrants`): asked whenever the keeper holds no usable grant, before
   * it spends a ticket of its own, with or without autoRedeem. `refused` hears of a token the
   * relay refused, so it is not handed over again.
   */
  handed?: HandedGrants;
  /**
   * Tickets to keep paid into the grant in each window (default 1). The relay puts a grant's
   * streams in a higher group for more tickets in the window (docs/design.md §8); above 1 the
   * keeper tops the grant up, one ticket at a time, while the wallet has tickets.
   */
  tickets?: number;
  /** A grant expiring within this many seconds is treated as gone (default 60). */
  marginSeconds?: number;
  /** After a redeem that brought nothing, wait this long before another (default 60). */
  retrySeconds?: number;
  /** How long a new stream waits for a redeem in progress (default 5000 ms). */
  waitMs?: number;
  /** Unix seconds. */
  now?: () => number;
  logger?: Logger;
}

/**
 * Holds the current grant and renews it while streams are active: when a stream starts, or
 * the grant comes within the margin of expiry while streams run, it calls `redeem()`, never
 * two at a time. A renewal is a fresh grant (a new token), which applies to streams opened
 * after it (the relay reads the token at upgrade), so the renewal is for the streams to come.
 *
 * With `tickets` above 1 it also tops the grant up: each ticket paid in counts for a window
 * from its redemption, so whenever fewer than `tickets` of them are good beyond the margin it
 * spends one more into the same token. A top-up moves the grant's open streams as well, since
 * the relay classifies every chunk by the token's tickets. It links the tickets of one grant
 * to each other, the price of a higher group; renewals stay unlinked.
 */
export class GrantKeeper {
  private grant: GrantLike | null = null;
  /** When each ticket paid into the current grant stops counting (Unix seconds). */
  private paid: number[] = [];
  private inflight: Promise<void> | null = null;
  private retryAt = 0;
  private leases = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly autoRedeem: boolean;
  private readonly tickets: number;
  private readonly margin: number;
  private readonly retry: number;
  private readonly waitMs: number;
  private readonly now: () => number;
  private readonly log: Logger;
  /** Redeem calls made, top-ups included (for status lines and tests). */
  redeems = 0;
  /** Of those, top-ups of a live grant. */
  topUps = 0;

  constructor(private readonly options: GrantKeeperOptions) {
    this.autoRedeem = options.autoRedeem ?? true;
    this.tickets = options.tickets ?? 1;
    if (!Number.isInteger(this.tickets) || this.tickets < 1) {
      throw new RangeError(`tickets per grant must be a positive integer, not ${this.tickets}`);
    }
    this.margin = options.marginSeconds ?? 60;
    this.retry = options.retrySeconds ?? 60;
    this.waitMs = options.waitMs ?? 5000;
    this.now = options.now ?? (() => Date.now() / 1000);
    this.log = options.logger ?? silentLogger;
  }

  /** Streams currently holding a lease. */
  get active(): number {
    return this.leases;
  }

  /** The current token, unless missing or expiring within the margin. */
  current(): string | null {
    const grant = this.grant;
    if (!grant || grant.expiresAt - this.now() <= this.margin) return null;
    return grant.token;
  }

  /** Tickets paid into the current grant that still count beyond the margin. */
  get paidTickets(): number {
    if (this.current() === null) return 0;
    const until = this.now() + this.margin;
    return this.paid.filter((expiresAt) => expiresAt > until).length;
  }

  /** Install a grant obtained elsewhere (taken as one ticket). */
  set(grant: GrantLike | null): void {
    this.grant = grant;
    this.paid = grant ? [grant.expiresAt] : [];
    this.schedule();
  }

  /** The relay refused this token (401): forget it, and so does whoever handed it over. */
  invalidate(token: string): void {
    this.options.handed?.refused(token);
    if (this.grant?.token === token) this.set(null);
  }

  /** Mark a stream active; returns its release (idempotent). */
  lease(): () => void {
    this.leases++;
    this.kick();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.leases--;
      if (this.leases === 0) clearTimeout(this.timer);
    };
  }

  /** The token for a stream about to open: waits up to `waitMs` for a redeem in progress. */
  async token(): Promise<string | null> {
    this.adoptHanded();
    const now = this.current();
    if (now !== null) return now;
    this.kick();
    const inflight = this.inflight;
    if (inflight && this.waitMs > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        inflight,
        new Promise<void>((resolve) => (timer = setTimeout(resolve, this.waitMs))),
      ]);
      clearTimeout(timer);
    }
    return this.current();
  }

  /** Wait for a redeem in progress, if any (tests, shutdown). */
  async settled(): Promise<void> {
    await this.inflight;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }

  /**
   * Start a redeem if one is due: streams active, none running, not backing off, and either
   * no usable grant (a fresh one) or fewer tickets in it than asked for (a top-up). Each
   * redeem that brings a grant kicks again, so top-ups follow one another up to the tier.
   */
  private kick(): void {
    this.adoptHanded();
    if (!this.autoRedeem || this.closed || this.leases === 0) return;
    if (this.inflight || this.now() < this.retryAt) return;
    const topUp = this.current();
    if (topUp !== null && this.paidTickets >= this.tickets) return;
    this.redeems++;
    if (topUp !== null) this.topUps++;
    this.inflight = (async () => {
      try {
        const grant = await this.options.redeem(topUp ?? undefined);
        if (grant) {
          this.took(grant, topUp);
          this.retryAt = 0;
        } else {
          this.retryAt = this.now() + this.retry;
        }
      } catch (err) {
        this.retryAt = this.now() + this.retry;
        this.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'redeem failed');
      } finally {
        this.inflight = null;
        this.kick();
        if (!this.inflight) this.schedule();
      }
    })();
  }

  /** Without a usable grant, take one handed over, if it is good beyond the margin. */
  private adoptHanded(): void {
    if (this.closed || this.current() !== null) return;
    const handed = this.options.handed?.current();
    if (!handed || handed.expiresAt - this.now() <= this.margin) return;
    this.grant = handed;
    this.paid = [handed.expiresAt];
  }

  /** A ticket went into `grant`: into the current one when the relay topped it up. */
  private took(grant: GrantLike, topUp: string | null): void {
    if (topUp !== null && grant.token === topUp && this.grant?.token === topUp) {
      this.paid.push(grant.expiresAt);
      this.grant = { token: topUp, expiresAt: Math.max(this.grant.expiresAt, grant.expiresAt) };
    } else {
      this.grant = grant;
      this.paid = [grant.expiresAt];
    }
  }

  /**
   * While streams are active, wake up when the grant enters the margin, when one of its
   * tickets stops counting for the tier, or when the backoff ends.
   */
  private schedule(): void {
    clearTimeout(this.timer);
    if (this.closed || this.leases === 0 || !this.autoRedeem) return;
    const delayMs = Math.max(1000, (this.nextDue() - this.now()) * 1000);
    if (!Number.isFinite(delayMs) || delayMs > 2 ** 31 - 1) return;
    this.timer = setTimeout(() => {
      this.kick();
      if (!this.inflight) this.schedule();
    }, delayMs);
    this.timer.unref();
  }

  /** When kick() next has something to do (Unix seconds). */
  private nextDue(): number {
    if (this.current() === null) return this.retryAt;
    const renewal = (this.grant?.expiresAt ?? 0) - this.margin;
    if (this.tickets === 1) return renewal;
    if (this.paidTickets < this.tickets) return Math.min(renewal, this.retryAt);
    const until = this.now() + this.margin;
    const lapses = this.paid.filter((e) => e > until).map((e) => e - this.margin);
    return Math.min(renewal, ...lapses);
  }
}

/**
 * A `redeem` for GrantKeeper that spends wallet tickets, into a new grant or, with `topUp`,
 * into that grant: tickets the relay calls spent or expired are settled in the wallet and the
 * next one is tried (a few at most); anything else brings nothing this time.
 */
export function walletRedeemer(
  wallet: Wallet,
  options: RedeemOptions & { logger?: Logger; maxTries?: number },
): (topUp?: string) => Promise<GrantLike | null> {
  const log = options.logger ?? silentLogger;
  return async (topUp) => {
    const skip = [...(options.skip ?? [])];
    for (let i = 0; i < (options.maxTries ?? 3); i++) {
      const outcome = await redeemFromWallet(wallet, {
        ...options,
        skip,
        ...(topUp === undefined ? {} : { grant: topUp }),
      });
      switch (outcome.kind) {
        case 'granted':
          log.info(
            {
              class: outcome.grant.class,
              expiresAt: outcome.grant.expiresAt,
              topUp: topUp !== undefined && outcome.grant.token === topUp,
            },
            'grant',
          );
          return { token: outcome.grant.token, expiresAt: outcome.grant.expiresAt };
        case 'none':
          return null;
        case 'already-spent':
        case 'expired':
        case 'refused':
          log.warn({ kind: outcome.kind, message: outcome.message }, 'ticket not redeemed');
          skip.push(outcome.ticketId);
          continue;
        default:
          log.warn({ kind: outcome.kind, message: outcome.message }, 'ticket not redeemed');
          return null;
      }
    }
    return null;
  };
}

/** SOCKS5 reply codes (RFC 1928 §6). */
export const SocksReply = {
  succeeded: 0x00,
  generalFailure: 0x01,
  notAllowed: 0x02,
  networkUnreachable: 0x03,
  hostUnreachable: 0x04,
  connectionRefused: 0x05,
  ttlExpired: 0x06,
  commandNotSupported: 0x07,
  addressTypeNotSupported: 0x08,
} as const;

const REPLY_FOR: Record<TunnelFailure, number> = {
  unauthorized: SocksReply.generalFailure,
  busy: SocksReply.generalFailure,
  rejected: SocksReply.generalFailure,
  'not-allowed': SocksReply.notAllowed,
  unreachable: SocksReply.hostUnreachable,
  refused: SocksReply.connectionRefused,
  timeout: SocksReply.ttlExpired,
  'relay-unreachable': SocksReply.networkUnreachable,
  aborted: SocksReply.generalFailure,
  failed: SocksReply.generalFailure,
};

/** The SOCKS reply for a failed tunnel open. */
export function socksReplyFor(err: unknown): number {
  return err instanceof TunnelError ? REPLY_FOR[err.failure] : SocksReply.generalFailure;
}

export type GrantSource = (() => Promise<string | null> | string | null) | GrantKeeper;

/** Where a GrantKeeper finds grants it did not redeem itself. */
export interface HandedGrants {
  /** A live grant, if one was handed over. */
  current(): GrantLike | null;
  /** The relay refused this token. */
  refused(token: string): void;
}

/**
 * The grant `powbridge tickets redeem --for-socks` kept in the wallet for the relay at
 * `relayUrl` (its circuit URL, `circuitUrl`).
 */
export function walletGrants(
  wallet: Wallet,
  relayUrl: string,
  now: () => number = () => Date.now() / 1000,
): HandedGrants {
  return {
    current: () => wallet.grantFor(relayUrl, now()) ?? null,
    refused: (token) => void wallet.dropGrant(token),
  };
}

export interface SocksFrontOptions {
  host: string;
  port: number;
  /** The relay's base URL (http(s)/ws(s); the path is ignored). */
  relayUrl: string;
  /** The grant token for a new stream; a GrantKeeper also learns which streams are active. */
  grant?: GrantSource;
  /** A fresh agent per tunnel (e.g. `isolatedSocksAgents`, one Tor circuit per stream). */
  agentFactory?: () => Agent;
  logger?: Logger;
  /** Greeting and request must be complete within this (default 10 s). */
  handshakeTimeoutMs?: number;
  /** Passed to openTunnel (default 250 ms). */
  settleMs?: number;
  /** Simultaneous SOCKS connections; more are dropped (default 256). */
  maxConnections?: number;
}

export interface SocksFront {
  readonly address: AddressInfo;
  /** Connections currently open. */
  readonly connections: number;
  close(): Promise<void>;
}

const VERSION = 5;
const NO_AUTH = 0x00;
const NO_ACCEPTABLE = 0xff;
const CMD_CONNECT = 0x01;
const ATYP_V4 = 0x01;
const ATYP_DOMAIN = 0x03;
const ATYP_V6 = 0x04;
/** Greeting (2 + 255) plus the largest request (4 + 1 + 255 + 2): more is not SOCKS. */
const MAX_HANDSHAKE_BYTES = 2 + 255 + 4 + 1 + 255 + 2;
const HOSTNAME =
  /^[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$/;

type Parsed<T> = { value: T; used: number } | 'more' | 'bad';

/** The greeting: VER NMETHODS METHODS… */
function parseGreeting(buf: Buffer): Parsed<number[]> {
  if (buf.length < 2) return 'more';
  if (buf[0] !== VERSION || buf[1] === 0) return 'bad';
  const used = 2 + buf.readUInt8(1);
  if (buf.length < used) return 'more';
  return { value: [...buf.subarray(2, used)], used };
}

type Request = { cmd: number; to: string } | { cmd: number; reply: number };

/** The request: VER CMD RSV ATYP DST.ADDR DST.PORT */
function parseRequest(buf: Buffer): Parsed<Request> {
  if (buf.length < 5) return 'more';
  if (buf[0] !== VERSION || buf[2] !== 0) return 'bad';
  const cmd = buf.readUInt8(1);
  const atyp = buf.readUInt8(3);
  let host: string;
  let at: number;
  if (atyp === ATYP_V4) {
    if (buf.length < 4 + 4 + 2) return 'more';
    host = [...buf.subarray(4, 8)].join('.');
    at = 8;
  } else if (atyp === ATYP_V6) {
    if (buf.length < 4 + 16 + 2) return 'more';
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(buf.readUInt16BE(4 + i).toString(16));
    host = `[${groups.join(':')}]`;
    at = 20;
  } else if (atyp === ATYP_DOMAIN) {
    const length = buf.readUInt8(4);
    if (length === 0) return 'bad';
    if (buf.length < 5 + length + 2) return 'more';
    const name = buf.subarray(5, 5 + length).toString('latin1');
    at = 5 + length;
    const port = buf.readUInt16BE(at);
    if (isIP(name) === 6) host = `[${name}]`;
    else if (isIP(name) === 4 || HOSTNAME.test(name)) host = name.replace(/\.$/, '');
    else return { value: { cmd, reply: SocksReply.hostUnreachable }, used: at + 2 };
    return { value: request(cmd, host, port), used: at + 2 };
  } else {
    // Unknown address type: its length is unknown too, so nothing after it can be read.
    return { value: { cmd, reply: SocksReply.addressTypeNotSupported }, used: buf.length };
  }
  return { value: request(cmd, host, buf.readUInt16BE(at)), used: at + 2 };
}

function request(cmd: number, host: string, port: number): Request {
  if (cmd !== CMD_CONNECT) return { cmd, reply: SocksReply.commandNotSupported };
  if (port === 0) return { cmd, reply: SocksReply.notAllowed };
  return { cmd, to: `${host}:${port}` };
}

function reply(code: number): Buffer {
  // BND.ADDR/PORT: the relay does not tell us its outgoing address; 0.0.0.0:0.
  return Buffer.from([VERSION, code, 0, ATYP_V4, 0, 0, 0, 0, 0, 0]);
}

export async function startSocksFront(options: SocksFrontOptions): Promise<SocksFront> {
  const log = options.logger ?? silentLogger;
  const handshakeTimeoutMs = options.handshakeTimeoutMs ?? 10_000;
  const sockets = new Set<Socket>();
  const grant = options.grant;

  const tokenFor = async (): Promise<string | null> => {
    if (!grant) return null;
    if (grant instanceof GrantKeeper) return grant.token();
    return (await grant()) ?? null;
  };

  const tunnelThrough = async (socket: Socket, to: string, abort: AbortController) => {
    if (grant instanceof GrantKeeper) socket.once('close', grant.lease());
    const token = await tokenFor();
    if (socket.destroyed) return;
    const open = (withToken: string | null) =>
      openTunnel(options.relayUrl, to, {
        ...(withToken ? { token: withToken } : {}),
        ...(options.agentFactory ? { agent: options.agentFactory() } : {}),
        ...(options.settleMs !== undefined ? { settleMs: options.settleMs } : {}),
        signal: abort.signal,
      });
    let tunnel;
    try {
      try {
        tunnel = await open(token);
      } catch (err) {
        // The grant was refused (relay restarted, or expired early): go on in the free class.
        if (!(err instanceof TunnelError && err.failure === 'unauthorized' && token)) throw err;
        log.warn('grant refused by the relay; stream goes unprioritised');
        if (grant instanceof GrantKeeper) grant.invalidate(token);
        tunnel = await open(null);
      }
    } catch (err) {
      log.debug({ err: err instanceof Error ? err.message : String(err) }, 'tunnel not opened');
      if (!socket.destroyed) socket.end(reply(socksReplyFor(err)));
      return;
    }
    if (socket.destroyed) {
      tunnel.destroy();
      return;
    }
    socket.write(reply(SocksReply.succeeded));
    socket.setNoDelay(true);
    pipeline(socket, tunnel, socket, (err) => {
      if (err) log.debug({ err: err.message }, 'stream ended with an error');
    });
    socket.resume();
  };

  const handle = (socket: Socket): void => {
    sockets.add(socket);
    socket.on('error', () => {});
    const abort = new AbortController();
    const timer = setTimeout(() => socket.destroy(), handshakeTimeoutMs);
    socket.once('close', () => {
      sockets.delete(socket);
      clearTimeout(timer);
      abort.abort();
    });
    let buffered = Buffer.alloc(0);
    let stage: 'greeting' | 'request' = 'greeting';

    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      if (stage === 'greeting') {
        const greeting = parseGreeting(buffered);
        if (greeting === 'bad') return void socket.destroy();
        if (greeting === 'more') return tooLong();
        buffered = buffered.subarray(greeting.used);
        if (!greeting.value.includes(NO_AUTH)) {
          socket.end(Buffer.from([VERSION, NO_ACCEPTABLE]));
          return void socket.off('data', onData);
        }
        socket.write(Buffer.from([VERSION, NO_AUTH]));
        stage = 'request';
      }
      const parsed = parseRequest(buffered);
      if (parsed === 'bad') return void socket.destroy();
      if (parsed === 'more') return tooLong();
      socket.off('data', onData);
      socket.pause();
      clearTimeout(timer);
      const rest = buffered.subarray(parsed.used);
      buffered = Buffer.alloc(0);
      if ('reply' in parsed.value) {
        socket.end(reply(parsed.value.reply));
        return;
      }
      // Bytes the client sent ahead of our reply belong to the stream.
      if (rest.length > 0) socket.unshift(rest);
      void tunnelThrough(socket, parsed.value.to, abort);
    };
    const tooLong = (): void => {
      if (buffered.length > MAX_HANDSHAKE_BYTES) socket.destroy();
    };
    socket.on('data', onData);
  };

  const server = createServer({ pauseOnConnect: false }, (socket) => {
    if (sockets.size >= (options.maxConnections ?? 256)) return void socket.destroy();
    handle(socket);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  log.info({ address: `${address.address}:${address.port}` }, 'SOCKS5 front listening');

  return {
    address,
    get connections() {
      return sockets.size;
    },
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}
