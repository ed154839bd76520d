import { EventEmitter } from 'node:events';
import type { Agent } from 'node:http';
import { type Logger, silentLogger } from '../log.js';
import type { RegisterResult } from '../protocol/messages.js';
import { KeyPin } from '../tickets/key-pin.js';
import { type CircuitLink, CircuitSource } from './circuit-source.js';
import { LocalListenError, type UnusableRelayError } from './connect-errors.js';
import { Miner } from './miner.js';
import type { MinerStats } from './miner-stats.js';
import { circuitUrl } from './redeem.js';
import { admitRelay } from './relay-descriptor.js';
import { type CreditAccount, ShareTally } from './run-summary.js';
import { isolatedSocksAgents, parseSocksProxy } from './socks-agent.js';
import {
  GrantKeeper,
  type SocksFront,
  startSocksFront,
  walletGrants,
  walletRedeemer,
} from './socks-front.js';
import { type StratumFront, startStratumFront } from './stratum-front.js';
import { TicketLoop } from './ticket-loop.js';
import type { Wallet } from './wallet.js';

/**
 * `powbridge mine`: one circuit to the relay (through Tor's SOCKS port for real use), the
 * worker-pool miner on it, the ticket loop that turns credit into tickets, the wallet that
 * keeps them, and optionally a Stratum port for standard miners. A ticket is written to the
 * wallet before anything reports it. The workers hash only while the circuit is live (the
 * relay has upstream work and, with --relay-identity, its descriptor checked out); a relay
 * that cannot be mined for (wrong path, not the pinned relay) stops the app (`fatal`).
 */

export interface MineOptions {
  relayUrl: string;
  mode: 'tickets' | 'donate';
  threads: number;
  cpuPercent: number;
  jitterPercent: number;
  /** socks5h://host:port (Tor: DNS through the proxy). */
  proxy?: string;
  wallet?: Wallet;
  /** The relay's Ed25519 identity (hex), pinned out of band: the descriptor must match. */
  relayIdentity?: string;
  stratumListen?: { host: string; port: number };
  /** A local SOCKS5 port whose streams go through the relay's priority tunnel. */
  socksListen?: { host: string; port: number };
  /** Redeem wallet tickets automatically while SOCKS streams are active (default true). */
  autoRedeem?: boolean;
  /** Tickets to keep paid into the SOCKS streams' grant per window: its group (default 1). */
  priorityTickets?: number;
  agent?: string;
  logger?: Logger;
}

export interface MineStatus {
  /** Where the circuit stands (`live`: mining). */
  link: CircuitLink;
  miner: MinerStats | null;
  credit: number;
  tickets: number;
  ticketError: string | null;
}

export interface MineEvents {
  /** A ticket is safely in the wallet. */
  ticket: [{ day: number; keyId: string }];
  /** The circuit's state changed (connecting, live, paused, retrying with the reason...). */
  link: [CircuitLink];
  /**
   * This relay cannot be mined for, or a local port asked for cannot be opened: everything
   * has stopped mining; call stop().
   */
  fatal: [UnusableRelayError | LocalListenError];
}

export class MineApp extends EventEmitter<MineEvents> {
  readonly source: CircuitSource;
  private readonly miner: Miner | null;
  private readonly tickets: TicketLoop | null;
  private readonly agent: Agent | undefined;
  private readonly log: Logger;
  private front: StratumFront | null = null;
  private socks: SocksFront | null = null;
  private keeper: GrantKeeper | null = null;
  /** With --relay-identity: the relay's ticket keys as its descriptors showed them this run. */
  private readonly pin: KeyPin | null;
  /** For the summary at the end (`runReport`). */
  private startedAt: number | null = null;
  private readonly tally = new ShareTally();
  private readonly credit: Omit<CreditAccount, 'unspent'> = { paid: 0, lost: 0 };
  /** The credit as we last knew it on the current circuit. */
  private lastCredit = 0;

  constructor(private readonly options: MineOptions) {
    super();
    this.log = options.logger ?? silentLogger;
    // One agent (one set of SOCKS credentials, so one Tor circuit) for the mining circuit.
    this.agent = options.proxy ? isolatedSocksAgents(parseSocksProxy(options.proxy))() : undefined;
    const identity = options.relayIdentity;
    this.pin = identity ? new KeyPin(identity.toLowerCase()) : null;
    this.source = new CircuitSource({
      url: options.relayUrl,
      mode: options.mode,
      agent: options.agent ?? 'powbridge-miner',
      ...(this.agent ? { httpAgent: this.agent } : {}),
      ...(options.proxy ? { proxy: options.proxy } : {}),
      ...(identity ? { admit: (result) => this.admit(identity, result) } : {}),
      logger: this.log.child({ component: 'circuit' }),
    });
    this.miner =
      options.threads > 0
        ? new Miner({
            source: this.source,
            threads: options.threads,
            cpuPercent: options.cpuPercent,
            jitterPercent: options.jitterPercent,
            logger: this.log.child({ component: 'miner' }),
          })
        : null;
    const wallet = options.wallet;
    this.tickets =
      wallet && options.mode === 'tickets'
        ? new TicketLoop({
            source: this.source,
            wallet,
            // Under the normalised URL, so `powbridge tickets redeem --relay …` finds them.
            relayUrl: circuitUrl(options.relayUrl),
            logger: this.log.child({ component: 'tickets' }),
          })
        : null;
    this.tickets?.on('ticket', (t) => {
      this.credit.paid += this.source.registered?.ticket?.price ?? 0;
      this.lastCredit = this.source.credit;
      this.emit('ticket', { day: t.day, keyId: t.keyId });
    });
    this.miner?.on('share', (result) => this.tally.add(result));
    this.source.updates.on('credit', () => {
      this.lastCredit = this.source.credit;
      this.tickets?.poke();
    });
    this.source.updates.on('registered', () => {
      // The relay keeps credit per circuit: what the last one held is gone with it.
      this.credit.lost += this.lastCredit;
      this.lastCredit = 0;
      void this.onRegistered();
    });
    this.source.updates.on('link', (link) => this.emit('link', link));
    this.source.updates.on('fatal', (err) => void this.onFatal(err));
  }

  start(): void {
    this.startedAt ??= performance.now();
    this.source.start();
    this.miner?.start();
    if (this.options.socksListen) void this.startSocks(this.options.socksListen);
  }

  async stop(): Promise<void> {
    await this.socks?.close();
    this.keeper?.close();
    await this.front?.close();
    await this.miner?.stop();
    // A ticket being issued is paid for already: let it arrive before the circuit closes.
    await this.tickets?.close();
    await this.source.stop();
  }

  status(): MineStatus {
    return {
      link: this.source.link(),
      miner: this.miner?.stats() ?? null,
      credit: this.source.credit,
      tickets: this.tickets?.tickets ?? 0,
      ticketError: this.tickets?.lastError ?? null,
    };
  }

  /**
   * The run so far, for the summary printed when the miner is stopped: seconds since start,
   * hashes, shares with the reasons for rejections, where the credit went, tickets. The credit
   * is as the relay reported it after each share, less the price of each ticket since; a share
   * answered while a ticket was being issued may already show that price taken off, so the
   * unspent part can read short by up to one price until the next share.
   */
  runReport(): {
    seconds: number;
    hashes: number | null;
    shares: { accepted: number; rejected: number; stale: number };
    rejections: [string, number][];
    credit: CreditAccount | null;
    tickets: number;
  } {
    const stats = this.miner?.stats();
    return {
      seconds: this.startedAt === null ? 0 : (performance.now() - this.startedAt) / 1000,
      hashes: stats ? stats.hashes : null,
      shares: {
        accepted: stats?.accepted ?? 0,
        rejected: stats?.rejected ?? 0,
        stale: stats?.stale ?? 0,
      },
      rejections: this.tally.rejections(),
      credit: this.tickets ? { ...this.credit, unspent: this.source.credit } : null,
      tickets: this.tickets?.tickets ?? 0,
    };
  }

  /** --relay-identity: the relay's descriptor must be signed by it and list the offered key. */
  private admit(identity: string, result: RegisterResult): Promise<void> {
    return admitRelay(
      this.options.relayUrl,
      identity,
      this.options.mode === 'tickets' ? result.ticket : null,
      { ...(this.agent ? { agent: this.agent } : {}), ...(this.pin ? { pin: this.pin } : {}) },
    );
  }

  private async onFatal(err: UnusableRelayError | LocalListenError): Promise<void> {
    // The source has stopped; the workers must not wait on it. Shares cannot be sent anyway.
    await this.miner?.stop();
    this.emit('fatal', err);
  }

  /** SOCKS5 → tunnel, one Tor circuit per stream with --proxy, tickets redeemed as needed. */
  private async startSocks(at: { host: string; port: number }): Promise<void> {
    const proxy = this.options.proxy ? parseSocksProxy(this.options.proxy) : null;
    const agentFactory = proxy ? isolatedSocksAgents(proxy) : undefined;
    const wallet = this.options.wallet;
    if (wallet) {
      this.keeper = new GrantKeeper({
        redeem: walletRedeemer(wallet, {
          relayUrl: circuitUrl(this.options.relayUrl),
          now: () => Date.now() / 1000,
          ...(agentFactory ? { agentFactory } : {}),
          logger: this.log.child({ component: 'grants' }),
        }),
        // A grant `powbridge tickets redeem --for-socks` kept in the wallet goes first.
        handed: walletGrants(wallet, circuitUrl(this.options.relayUrl)),
        autoRedeem: this.options.autoRedeem ?? true,
        tickets: this.options.priorityTickets ?? 1,
        logger: this.log.child({ component: 'grants' }),
      });
    }
    try {
      this.socks = await startSocksFront({
        ...at,
        relayUrl: this.options.relayUrl,
        ...(this.keeper ? { grant: this.keeper } : {}),
        ...(agentFactory ? { agentFactory } : {}),
        logger: this.log.child({ component: 'socks' }),
      });
      this.log.info({ port: this.socks.address.port }, 'SOCKS5 front listening');
    } catch (err) {
      await this.onFatal(new LocalListenError('--socks-listen', at, err));
    }
  }

  private async onRegistered(): Promise<void> {
    if (this.options.stratumListen && !this.front) {
      try {
        this.front = await startStratumFront({
          source: this.source,
          ...this.options.stratumListen,
          logger: this.log,
        });
        this.log.info({ port: this.front.address.port }, 'Stratum front listening');
      } catch (err) {
        await this.onFatal(
          new LocalListenError('--stratum-listen', this.options.stratumListen, err),
        );
      }
    }
    this.tickets?.poke();
  }
}
