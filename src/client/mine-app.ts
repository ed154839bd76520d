import { EventEmitter } from 'node:events';
import type { Agent } from 'node:http';
import { type Logger, silentLogger } from '../log.js';
import { RpcError, RpcErrorCode } from '../protocol/errors.js';
import type { RegisterResult, TicketTerms } from '../protocol/messages.js';
import { CircuitSource } from './circuit-source.js';
import { Miner } from './miner.js';
import type { MinerStats } from './miner-stats.js';
import { circuitUrl } from './redeem.js';
import { checkTerms } from './relay-descriptor.js';
import { isolatedSocksAgents, parseSocksProxy } from './socks-agent.js';
import { GrantKeeper, type SocksFront, startSocksFront, walletRedeemer } from './socks-front.js';
import { type StratumFront, startStratumFront } from './stratum-front.js';
import { TicketClient } from './ticket-client.js';
import type { Wallet } from './wallet.js';

/**
 * `powbridge mine`: one circuit to the relay (through Tor's SOCKS port for real use), the
 * worker-pool miner on it, the ticket loop that turns credit into tickets, the wallet that
 * keeps them, and optionally a Stratum port for standard miners. A ticket is written to the
 * wallet before anything reports it.
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
  agent?: string;
  logger?: Logger;
}

export interface MineStatus {
  state: string;
  miner: MinerStats | null;
  credit: number;
  tickets: number;
  ticketError: string | null;
}

export interface MineEvents {
  /** A ticket is safely in the wallet. */
  ticket: [{ day: number; keyId: string }];
  status: [MineStatus];
}

export class MineApp extends EventEmitter<MineEvents> {
  readonly source: CircuitSource;
  private readonly miner: Miner | null;
  private readonly agent: Agent | undefined;
  private readonly log: Logger;
  private front: StratumFront | null = null;
  private socks: SocksFront | null = null;
  private keeper: GrantKeeper | null = null;
  private ticketsEarned = 0;
  private ticketBusy = false;
  private ticketError: string | null = null;
  private verifiedTerms = new WeakSet<RegisterResult>();

  constructor(private readonly options: MineOptions) {
    super();
    this.log = options.logger ?? silentLogger;
    // One agent (one set of SOCKS credentials, so one Tor circuit) for the mining circuit.
    this.agent = options.proxy ? isolatedSocksAgents(parseSocksProxy(options.proxy))() : undefined;
    this.source = new CircuitSource({
      url: options.relayUrl,
      mode: options.mode,
      agent: options.agent ?? 'powbridge-miner',
      ...(this.agent ? { httpAgent: this.agent } : {}),
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
    this.source.updates.on('credit', () => void this.maybeTicket());
    this.source.updates.on('registered', (r) => void this.onRegistered(r));
  }

  start(): void {
    this.source.start();
    this.miner?.start();
    if (this.options.socksListen) void this.startSocks(this.options.socksListen);
  }

  async stop(): Promise<void> {
    await this.socks?.close();
    this.keeper?.close();
    await this.front?.close();
    await this.miner?.stop();
    await this.source.stop();
  }

  status(): MineStatus {
    return {
      state: this.source.status().state,
      miner: this.miner?.stats() ?? null,
      credit: this.source.credit,
      tickets: this.ticketsEarned,
      ticketError: this.ticketError,
    };
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
        autoRedeem: this.options.autoRedeem ?? true,
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
      this.log.error({ err: (err as Error).message }, 'SOCKS5 front failed to start');
    }
  }

  private async onRegistered(result: RegisterResult): Promise<void> {
    if (this.options.stratumListen && !this.front) {
      try {
        this.front = await startStratumFront({
          source: this.source,
          ...this.options.stratumListen,
          logger: this.log,
        });
        this.log.info({ port: this.front.address.port }, 'Stratum front listening');
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'Stratum front failed to start');
      }
    }
    if (result.ticket && this.options.mode === 'tickets') await this.verify(result);
  }

  /** Check the relay's ticket key against its descriptor signed by the pinned identity. */
  private async verify(result: RegisterResult): Promise<boolean> {
    if (this.verifiedTerms.has(result)) return true;
    const terms = result.ticket as TicketTerms;
    if (!this.options.relayIdentity) {
      this.verifiedTerms.add(result);
      return true;
    }
    try {
      await checkTerms(this.options.relayUrl, this.options.relayIdentity, terms, {
        ...(this.agent ? { agent: this.agent } : {}),
      });
      this.verifiedTerms.add(result);
      return true;
    } catch (err) {
      this.ticketError = `relay ticket key not trusted: ${(err as Error).message}`;
      this.log.error({ err: this.ticketError }, 'refusing tickets from this relay');
      return false;
    }
  }

  /** Credit covers the price: get a ticket, store it, then count it. One at a time. */
  private async maybeTicket(): Promise<void> {
    const registered = this.source.registered;
    const terms = registered?.ticket;
    const wallet = this.options.wallet;
    if (this.ticketBusy || !terms || !wallet || this.options.mode !== 'tickets') return;
    if (this.source.credit < terms.price) return;
    const circuit = this.source.circuit;
    if (!circuit || !registered || !(await this.verify(registered))) return;
    this.ticketBusy = true;
    try {
      const issued = await new TicketClient(terms).obtain(circuit, () =>
        this.source.noteSpent(terms.price),
      );
      // Durable before anything else learns of it (status line, log, counters).
      // Under the normalised URL, so `powbridge tickets redeem --relay …` finds them.
      wallet.add(circuitUrl(this.options.relayUrl), issued, Date.now() / 1000);
      this.ticketsEarned += 1;
      this.ticketError = null;
      this.emit('ticket', { day: issued.day, keyId: issued.keyId });
      this.log.info({ day: issued.day }, 'ticket stored in the wallet');
    } catch (err) {
      if (err instanceof RpcError && err.code === RpcErrorCode.notEnoughCredit) {
        // Our view of the credit ran ahead of the relay's: wait for the next share.
        this.log.debug('not enough credit yet');
      } else {
        this.ticketError = (err as Error).message;
        this.log.warn({ err: this.ticketError }, 'ticket request failed');
      }
    } finally {
      this.ticketBusy = false;
    }
    // More credit may have arrived meanwhile (e.g. a burst of shares).
    if (this.source.credit >= (terms.price ?? Infinity) && this.ticketError === null) {
      void this.maybeTicket();
    }
  }
}
