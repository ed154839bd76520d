import type { Agent } from 'node:http';
import type { Registry } from 'prom-client';
import { type Logger, silentLogger } from '../log.js';
import { ALWAYS_LEADING, type SyncLeadership } from '../storage/family-leader.js';
import type { PeerLedger } from '../storage/peer-ledger.js';
import type { SpentLog } from '../storage/spent-log.js';
import type { Keyring } from '../tickets/keyring.js';
import { PeerApiGuard, type PeerApiStatus } from './peer-api-guard.js';
import type { PeerSigner } from './peer-auth.js';
import type { PeerConfig, PeeringConfig } from './peer-config.js';
import { type SettlementTicketSpender, PeerHandlers } from './peer-handlers.js';
import { PeeredKeyring, type PeerKeyDirectory } from './peer-keys.js';
import { registerPeerMetrics } from './peer-metrics.js';
import { PeerRoster } from './peer-roster.js';
import { PEER_TICKET_REFUSALS, type PeerStatus, type RefusingReason } from './peer-status.js';
import { PeerSync } from './peer-sync.js';
import { SpendReplicator } from './replication.js';
import { PeerTicketGate, refusingReason } from './ticket-gate.js';
import { PeerTicketTally } from './ticket-tally.js';

/**
 * Protocol 2 (docs/design.md §7) for one relay, assembled from its parts: the roster of
 * configured peers, the gate their tickets pass through here (ticket-gate.ts), the replication
 * of spent serials (replication.ts, peer-sync.ts), the answers to their requests
 * (peer-handlers.ts, served by peer-api.ts behind peer-api-guard.ts), the tally of refused
 * tickets (ticket-tally.ts) and the metrics (peer-metrics.ts). The ledger, the key cache and
 * the leadership are opened by the caller and only used here. In a relay family every
 * instance answers the peer API and admits peers' tickets from the shared ledger; only the
 * leader runs the sync loop (src/storage/family-leader.ts).
 */

export interface PeeringOptions {
  peers: readonly PeerConfig[];
  settings: PeeringConfig;
  identity: PeerSigner;
  /** Our own key store: issuing keys, accepted keys and the ids of every key we hold. */
  ownKeys: Keyring & { holdsKey(keyIdHex: string): boolean };
  store: SpentLog;
  ledger: PeerLedger;
  /** Whether this instance runs the sync loop now (a family's leader); default always. */
  leadership?: SyncLeadership;
  /** Verified descriptors of the peers, cached on disk (`<dataDir>/peers`). */
  keys: PeerKeyDirectory;
  now?: () => number;
  logger?: Logger;
  /** Where the peer API's summary of refused requests goes (default `logger`). */
  apiLogger?: Logger;
  agent?: Agent;
}

export class Peering {
  readonly roster: PeerRoster;
  readonly ledger: PeerLedger;
  readonly keys: PeerKeyDirectory;
  /** Our keys, then the keys of peers whose tickets we accept. */
  readonly keyring: Keyring;
  readonly gate: PeerTicketGate;
  /** Counts and rate-limits requests to our peer API that do not authenticate. */
  readonly apiGuard: PeerApiGuard;
  private readonly tally: PeerTicketTally;
  private readonly replicator: SpendReplicator;
  private readonly sync: PeerSync;
  private readonly leadership: SyncLeadership;
  private readonly now: () => number;
  private readonly log: Logger;

  constructor(private readonly options: PeeringOptions) {
    this.now = options.now ?? (() => Date.now() / 1000);
    this.log = options.logger ?? silentLogger;
    this.ledger = options.ledger;
    this.keys = options.keys;
    this.roster = new PeerRoster({
      peers: options.peers,
      settings: options.settings,
      identity: options.identity,
      now: this.now,
      ...(options.agent ? { agent: options.agent } : {}),
    });
    logPeeringEvents(this.roster, this.log);
    this.tally = new PeerTicketTally(this.roster, this.log);
    this.apiGuard = new PeerApiGuard({ now: this.now, logger: options.apiLogger ?? this.log });
    for (const problem of this.keys.loadCached(options.peers)) this.log.warn(problem);
    this.keyring = new PeeredKeyring(
      options.ownKeys,
      this.keys,
      (name) => this.roster.peer(name)?.acceptTickets === true,
    );
    this.replicator = new SpendReplicator(options.store, this.ledger, this.roster, this.now);
    const leadership = options.leadership ?? ALWAYS_LEADING;
    this.leadership = leadership;
    this.sync = new PeerSync({
      roster: this.roster,
      ledger: this.ledger,
      leadership,
      keys: this.keys,
      replicator: this.replicator,
      intervalSeconds: options.settings.syncIntervalSeconds,
      now: this.now,
      logger: this.log,
    });
    this.gate = new PeerTicketGate({
      roster: this.roster,
      ledger: this.ledger,
      store: options.store,
      retryAfterSeconds: options.settings.syncIntervalSeconds,
      // A new bill goes out now from the leader; from another instance at the leader's next round.
      syncSoon: (peer) => {
        if (leadership.isLeading()) void this.sync.syncPeer(peer);
      },
      logger: this.log,
    });
  }

  /** The answers to peers' requests; `spendTicket` checks and spends tickets paid to us. */
  handlers(spendTicket: SettlementTicketSpender): PeerHandlers {
    return new PeerHandlers({
      ownKeys: this.options.ownKeys,
      store: this.options.store,
      ledger: this.ledger,
      replicator: this.replicator,
      spendTicket,
      now: this.now,
      logger: this.log,
    });
  }

  registerMetrics(registry: Registry): void {
    registerPeerMetrics(registry, {
      roster: this.roster,
      balance: (peer) => this.ledger.balance(peer),
      refusing: async (peer) => this.refusing(peer, await this.ledger.unpaidToUs(peer)),
      refused: (peer) => this.tally.refused(peer),
      api: this.apiGuard,
    });
  }

  /** Sync every peer now and then every `syncIntervalSeconds`. */
  start(): void {
    this.sync.start();
  }

  /** Whether this instance runs the sync loop now: always alone, the leader in a family. */
  syncing(): boolean {
    return this.leadership.isLeading();
  }

  /** One sync round with a peer; concurrent calls share the running round. */
  syncPeer(name: string): Promise<void> {
    return this.sync.syncPeer(name);
  }

  /** Stops syncing; the ledger belongs to the caller, who closes it after this. */
  async stop(): Promise<void> {
    this.apiGuard.close();
    await this.sync.stop();
  }

  async status(): Promise<PeerStatus[]> {
    const statuses: PeerStatus[] = [];
    for (const peer of this.roster.peers()) {
      const balance = await this.ledger.balance(peer.name);
      const reason = this.refusing(peer.name, balance.unpaidToUs);
      statuses.push({
        name: peer.name,
        url: peer.url,
        identity: peer.identity,
        acceptTickets: reason === null,
        refusing: reason === null ? null : { reason, code: PEER_TICKET_REFUSALS[reason] },
        refused: this.tally.refused(peer.name),
        ...this.roster.state(peer.name),
        keys: this.keys.descriptor(peer.name)?.tickets.keys.map((k) => k.keyId) ?? [],
        balance,
      });
    }
    return statuses;
  }

  /** The `peerApi` section of /v1/status. */
  apiStatus(): PeerApiStatus {
    return this.apiGuard.status();
  }

  /** Why every ticket of `name` is refused now, or null while they are accepted. */
  private refusing(name: string, unpaidToUs: number): RefusingReason | null {
    const peer = this.roster.peer(name);
    if (!peer) return null;
    const { up } = this.roster.state(name);
    return refusingReason(peer, unpaidToUs, { up, refusesUs: this.tally.refusesUs(name) });
  }
}

/** What an operator reads in the log about peers, from the roster's events. */
function logPeeringEvents(roster: PeerRoster, log: Logger): void {
  roster.on('reachability', ({ peer, up, wasUp, error }) => {
    if (up && wasUp === false) log.info({ peer }, 'peer reachable again');
    if (!up && wasUp !== false) log.warn({ peer, err: error }, 'peer unreachable');
  });
  roster.on('served', ({ peer, offline }) => {
    if (offline) log.info({ peer }, 'accepted a ticket of an unreachable peer');
  });
  roster.on('billed', ({ peer, id, count }) => log.info({ peer, count, id }, 'payment request'));
  roster.on('conflict', ({ peer, day }) =>
    log.error(
      { peer, day },
      'double spend: a ticket was redeemed here and at a peer (not billed; see peers status)',
    ),
  );
}
