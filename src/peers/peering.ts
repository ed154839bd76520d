import { randomBytes } from 'node:crypto';
import type { Agent } from 'node:http';
import { join } from 'node:path';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import { Gauge, type Registry } from 'prom-client';
import { type Logger, silentLogger } from '../log.js';
import { RpcError, RpcErrorCode } from '../protocol/errors.js';
import type { PeerConfig, PeeringConfig } from '../relay/config.js';
import type { Keyring } from '../tickets/keyring.js';
import type { ForeignTicketGate } from '../tickets/redeemer.js';
import type { SpendRequest, SpentStore } from '../tickets/spent-store.js';
import type { PeerSigner } from './peer-auth.js';
import { PeerClient, PeerRefusedError, PeerUnreachableError } from './peer-client.js';
import { PeeredKeyring, PeerKeyDirectory } from './peer-keys.js';
import {
  PEER_LEDGER_FILE,
  type PeerBalance,
  PeerLedger,
  type PaymentRequest,
  serialsDigest,
} from './peer-ledger.js';
import {
  MAX_SPENT_PAGE,
  PEER_PREFIX,
  paymentResponse,
  type ReserveResult,
  reserveResponse,
  settleResponse,
  spentResponse,
  type SpentSerialJson,
} from './peer-messages.js';

/**
 * Protocol 2 (DESIGN §7) for one relay: the tickets of its peers it accepts (reserving each
 * serial at the ticket's relay first, or accepting it while that relay is unreachable), the
 * replication of spent serials both ways with conflict detection, and PAYMENT_REQUESTs and
 * settlements. The HTTP side is peer-api.ts; this class holds the decisions.
 */

/** What a peer's spent log entry claims, checked by the caller's schema. */
interface ReplicatedSpend {
  serial: string;
  keyId: string;
  day: number;
  at: number;
}

/** Refusal of a peer API request: HTTP status plus a stable code. */
export class PeerApiError extends Error {
  override name = 'PeerApiError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface PeerState {
  /** null until the first exchange. */
  up: boolean | null;
  lastContactAt: number | null;
  lastError: string | null;
}

export interface PeerStatus extends PeerState {
  name: string;
  url: string;
  identity: string;
  acceptTickets: boolean;
  /** Ticket keys known from its verified descriptor. */
  keys: string[];
  balance: PeerBalance;
}

export interface PeeringOptions {
  peers: readonly PeerConfig[];
  settings: PeeringConfig;
  dataDir: string;
  identity: PeerSigner;
  /** Our own key store: issuing keys and our keys' ids. */
  ownKeys: Keyring & { holdsKey(keyIdHex: string): boolean };
  store: SpentStore;
  now?: () => number;
  logger?: Logger;
  agent?: Agent;
}

/** Days a replicated spend may lie ahead of our clock (the peer's clock may be a day on). */
const FUTURE_DAY_SLACK = 1;
const MAX_PAGES_PER_SYNC = 20;

export class Peering {
  readonly ledger: PeerLedger;
  readonly keys: PeerKeyDirectory;
  readonly keyring: Keyring;
  readonly gate: ForeignTicketGate;
  private readonly byName = new Map<string, PeerConfig>();
  private readonly byIdentity = new Map<string, PeerConfig>();
  private readonly clients = new Map<string, PeerClient>();
  private readonly states = new Map<string, PeerState>();
  private readonly syncing = new Map<string, Promise<void>>();
  private readonly now: () => number;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | null = null;
  private spendTicket: ((ticket: string, now: number, origin: string) => boolean) | null = null;

  constructor(private readonly options: PeeringOptions) {
    this.now = options.now ?? (() => Date.now() / 1000);
    this.log = options.logger ?? silentLogger;
    for (const peer of options.peers) {
      if (peer.identity === options.identity.publicKeyHex) {
        throw new Error(`peers.${peer.name}: that is this relay's own identity`);
      }
      this.byName.set(peer.name, peer);
      this.byIdentity.set(peer.identity, peer);
      this.states.set(peer.name, { up: null, lastContactAt: null, lastError: null });
      this.clients.set(
        peer.name,
        new PeerClient({
          self: options.identity,
          peer: { name: peer.name, url: peer.url, identity: peer.identity },
          timeoutMs: options.settings.requestTimeoutSeconds * 1000,
          clockSkewSeconds: options.settings.clockSkewSeconds,
          now: this.now,
          ...(options.agent ? { agent: options.agent } : {}),
        }),
      );
    }
    this.keys = new PeerKeyDirectory(join(options.dataDir, 'peers'), this.now);
    for (const problem of this.keys.loadCached(options.peers)) this.log.warn(problem);
    this.ledger = PeerLedger.open(join(options.dataDir, PEER_LEDGER_FILE));
    this.keyring = new PeeredKeyring(
      options.ownKeys,
      this.keys,
      (name) => this.byName.get(name)?.acceptTickets === true,
    );
    this.gate = {
      admit: (owner, spend) => this.admit(owner, spend),
      served: (owner, spend, seq, admission) => this.served(owner, spend, seq, admission.offline),
    };
  }

  /** The peer a signed request claims to come from, by its identity; undefined if unknown. */
  peerByIdentity(identity: string): PeerConfig | undefined {
    return this.byIdentity.get(identity);
  }

  /** Sync every peer now and then every `syncIntervalSeconds`. */
  start(): void {
    if (this.timer || this.byName.size === 0) return;
    const tick = () => {
      for (const name of this.byName.keys()) void this.syncPeer(name);
    };
    tick();
    this.timer = setInterval(tick, this.options.settings.syncIntervalSeconds * 1000);
    this.timer.unref();
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await Promise.allSettled([...this.syncing.values()]);
    this.ledger.close();
  }

  // --- the ticket side: a peer's ticket redeemed here ---

  private async admit(owner: string, spend: SpendRequest): Promise<{ offline: boolean }> {
    const peer = this.byName.get(owner);
    const client = this.clients.get(owner);
    if (!peer || !client || !peer.acceptTickets) {
      throw new RpcError(RpcErrorCode.unknownTicketKey, 'unknown ticket key');
    }
    if (this.ledger.unpaidToUs(owner) >= peer.maxUnpaid) {
      throw new RpcError(
        RpcErrorCode.peerNotTrusted,
        `peer not trusted: tickets of ${owner} are not accepted here until it settles its debt`,
      );
    }
    if (this.options.store.isSpent(spend.serial)) {
      throw new RpcError(RpcErrorCode.ticketSpent, 'ticket already spent');
    }
    let result: ReserveResult;
    try {
      const answer = await client.call(
        'POST',
        `${PEER_PREFIX}/reserve`,
        { serials: [serialJson(spend)] },
        reserveResponse,
      );
      this.contact(owner, null);
      const mine = answer.results.find((r) => r.serial === bytesToHex(spend.serial));
      if (!mine) throw new PeerUnreachableError(`peer ${owner}: reserve answer lacks the serial`);
      result = mine.result;
    } catch (err) {
      if (err instanceof PeerRefusedError) {
        this.contact(owner, err.message);
        this.log.warn({ peer: owner, code: err.code }, 'peer refused a reservation');
        throw new RpcError(
          RpcErrorCode.peerNotTrusted,
          `peer not trusted: ${owner} refused to reserve the ticket`,
        );
      }
      if (!(err instanceof PeerUnreachableError)) throw err;
      this.lost(owner, err.message);
      if (!peer.acceptWhenOffline) {
        throw new RpcError(
          RpcErrorCode.issuerBusy,
          "the ticket's relay is unreachable; retry later",
          { retryAfter: Math.ceil(this.options.settings.syncIntervalSeconds) },
        );
      }
      return { offline: true };
    }
    if (result === 'spent') throw new RpcError(RpcErrorCode.ticketSpent, 'ticket already spent');
    if (result === 'unknown_key') {
      throw new RpcError(RpcErrorCode.unknownTicketKey, 'unknown ticket key');
    }
    return { offline: false };
  }

  private served(owner: string, spend: SpendRequest, seq: number, offline: boolean): void {
    const peer = this.byName.get(owner);
    if (!peer) return;
    try {
      const request = this.ledger.recordServed(
        owner,
        { serial: spend.serial, keyId: spend.keyId, day: spend.day, seq, at: spend.at, offline },
        peer.paymentEvery,
        newId,
      );
      if (offline) this.log.info({ peer: owner }, 'accepted a ticket of an unreachable peer');
      if (request) {
        this.log.info({ peer: owner, count: request.count, id: request.id }, 'payment request');
        void this.syncPeer(owner);
      }
    } catch (err) {
      // The spend is recorded and the grant is owed; billing this one ticket is what is lost.
      this.log.error({ peer: owner, err: String(err) }, 'could not record a served ticket');
    }
  }

  // --- the API side: what a peer asks of us (peer-api.ts has checked who it is) ---

  reserve(
    peer: PeerConfig,
    serials: readonly SpentSerialJson[],
  ): { serial: string; result: ReserveResult }[] {
    const at = Math.floor(this.now());
    return serials.map((s) => {
      // Only our own keys that still verify today (a held key past its last redeemable day does not).
      if (!this.options.ownKeys.acceptedKey(s.keyId)) {
        return { serial: s.serial, result: 'unknown_key' as const };
      }
      const serial = hexToBytes(s.serial);
      const spent = this.options.store.trySpend({
        serial,
        keyId: hexToBytes(s.keyId),
        day: s.day,
        at,
        origin: peer.name,
      });
      if (spent.spent) return { serial: s.serial, result: 'reserved' as const };
      // The same peer asking again (its answer was lost) gets the same yes.
      const existing = this.options.store.lookup(serial);
      return {
        serial: s.serial,
        result: existing?.origin === peer.name ? ('reserved' as const) : ('spent' as const),
      };
    });
  }

  spentPage(
    peer: PeerConfig,
    after: number,
    limit: number,
  ): { records: (SpentSerialJson & { seq: number; at: number })[]; more: boolean; head: number } {
    // Asking from `after` says the peer holds all of ours up to there.
    this.ledger.setAcked(peer.name, after);
    const records = this.options.store.localSince(after, limit);
    return {
      records: records.map((r) => ({
        seq: r.seq,
        serial: bytesToHex(r.serial),
        keyId: bytesToHex(r.keyId),
        day: r.day,
        at: r.at,
      })),
      more: records.length === limit,
      head: this.options.store.head(),
    };
  }

  paymentRequest(
    peer: PeerConfig,
    request: Omit<PaymentRequest, 'serials'> & { serials: SpentSerialJson[] },
  ): { recorded: boolean; known: number } {
    const serials = request.serials.map((s) => hexToBytes(s.serial));
    if (new Set(request.serials.map((s) => s.serial)).size !== serials.length) {
      throw new PeerApiError(400, 'bad_request', 'a serial is listed twice');
    }
    if (serialsDigest(serials) !== request.digest) {
      throw new PeerApiError(400, 'bad_digest', 'digest does not match the serials');
    }
    const foreign = request.serials.find((s) => !this.options.ownKeys.holdsKey(s.keyId));
    if (foreign) {
      throw new PeerApiError(
        400,
        'not_our_tickets',
        `key ${foreign.keyId} is not one of this relay's ticket keys`,
      );
    }
    // The billed serials were spent at the peer: they double as a sync of its log.
    const known = this.apply(
      peer.name,
      request.serials.map((s) => ({ ...s, at: request.period.to })),
    );
    const recorded = this.ledger.recordRequestIn(
      peer.name,
      { id: request.id, count: request.count, digest: request.digest, period: request.period },
      known,
      Math.floor(this.now()),
    );
    if (recorded) {
      this.log.warn(
        { peer: peer.name, count: request.count, id: request.id, known },
        'payment request received: settle with `powbridge peers settle`',
      );
    }
    return { recorded, known };
  }

  /**
   * The peer settles: on its operator's word ('operator'), or with our own tickets it earned
   * by mining for us ('work'), which we verify and spend here so only good ones count.
   */
  settle(
    peer: PeerConfig,
    settlement: { id: string; count: number; method: 'operator' | 'work'; tickets?: string[] },
  ): { recorded: boolean; accepted: number } {
    const now = this.now();
    // A retry (our answer was lost): its tickets are spent by now, so answer as before.
    const before = this.ledger.receivedSettlement(peer.name, settlement.id);
    if (before !== undefined) return { recorded: false, accepted: before };
    let accepted = settlement.count;
    if (settlement.method === 'work') {
      const spend = this.spendTicket;
      if (!spend) throw new PeerApiError(503, 'unavailable', 'tickets cannot be checked yet');
      accepted = (settlement.tickets ?? []).filter((t) => spend(t, now, peer.name)).length;
      if (accepted === 0) return { recorded: false, accepted: 0 };
    }
    const recorded = this.ledger.recordReceived(
      peer.name,
      settlement.id,
      accepted,
      settlement.method,
      Math.floor(now),
    );
    if (recorded) {
      this.log.info(
        { peer: peer.name, count: accepted, method: settlement.method },
        'peer settled tickets',
      );
    }
    return { recorded, accepted };
  }

  /** How 'work' settlements spend our own tickets (the redeemer, once it exists). */
  useTicketSpender(spend: (ticket: string, now: number, origin: string) => boolean): void {
    this.spendTicket = spend;
  }

  /**
   * Record spends a peer made (its log, or its bill) in our spent store. Idempotent. A serial
   * we spent ourselves too is a double spend across relays: recorded and reported once.
   * Returns how many were already known as spent at that peer.
   */
  private apply(peerName: string, spends: readonly ReplicatedSpend[]): number {
    const now = Math.floor(this.now());
    const lastDay = Math.floor(now / 86_400) + FUTURE_DAY_SLACK;
    let known = 0;
    for (const spend of spends) {
      if (spend.day > lastDay) continue; // nobody accepts it yet; the peer's clock is wrong
      const serial = hexToBytes(spend.serial);
      const keyId = hexToBytes(spend.keyId);
      const result = this.options.store.trySpend({
        serial,
        keyId,
        day: spend.day,
        at: Math.min(spend.at, now),
        origin: peerName,
      });
      if (result.spent) continue;
      const existing = this.options.store.lookup(serial);
      if (!existing) continue; // pruned meanwhile
      if (existing.origin === peerName) {
        known++;
        continue;
      }
      if (existing.origin !== 'local') continue; // a third relay's conflict, not ours to tell
      const fresh = this.ledger.recordConflict(
        peerName,
        { serial, keyId, day: spend.day, oursAt: existing.at, theirsAt: spend.at },
        now,
      );
      if (fresh) {
        this.log.error(
          { peer: peerName, serial: spend.serial.slice(0, 16), day: spend.day },
          'double spend: a ticket was redeemed here and at a peer',
        );
      }
    }
    return known;
  }

  // --- sync with each peer ---

  /** One sync round with a peer; concurrent calls share the running round. */
  syncPeer(name: string): Promise<void> {
    const running = this.syncing.get(name);
    if (running) return running;
    const round = this.syncRound(name)
      .catch((err: unknown) => {
        const message = err instanceof Error ? err.message : String(err);
        if (err instanceof PeerUnreachableError) this.lost(name, message);
        else this.contact(name, message);
        this.log.warn({ peer: name, err: message }, 'peer sync failed');
      })
      .finally(() => this.syncing.delete(name));
    this.syncing.set(name, round);
    return round;
  }

  private async syncRound(name: string): Promise<void> {
    const peer = this.byName.get(name);
    const client = this.clients.get(name);
    if (!peer || !client) return;
    const text = await client.fetchPublic('/v1/descriptor');
    this.keys.update(name, peer.identity, text);
    for (let page = 0; page < MAX_PAGES_PER_SYNC; page++) {
      const after = this.ledger.pulled(name);
      const answer = await client.call(
        'GET',
        `${PEER_PREFIX}/spent?after=${after}&limit=${MAX_SPENT_PAGE}`,
        undefined,
        spentResponse,
      );
      if (answer.head < after) {
        // Idempotent apply makes a full re-read safe; conflicts are still recorded once.
        this.log.warn(
          { peer: name, cursor: after, head: answer.head },
          "peer's spent log is behind our cursor (restored from a backup?): reading it again",
        );
        this.ledger.resetPulled(name);
        continue;
      }
      const records = answer.records.filter((r) => r.seq > after);
      this.apply(name, records);
      const last = records.at(-1);
      if (last) this.ledger.setPulled(name, last.seq);
      if (!answer.more || !last) break;
    }
    for (const request of this.ledger.undeliveredRequests(name)) {
      await client.call(
        'POST',
        `${PEER_PREFIX}/payment-request`,
        {
          id: request.id,
          count: request.count,
          digest: request.digest,
          period: request.period,
          serials: request.serials.map((s) => ({
            serial: bytesToHex(s.serial),
            keyId: bytesToHex(s.keyId),
            day: s.day,
          })),
        },
        paymentResponse,
      );
      this.ledger.markRequestDelivered(request.id, Math.floor(this.now()));
    }
    for (const settlement of this.ledger.undeliveredSettlements(name)) {
      const answer = await client.call(
        'POST',
        `${PEER_PREFIX}/settle`,
        {
          id: settlement.id,
          count: settlement.count,
          method: settlement.method,
          at: settlement.at,
          ...(settlement.tickets ? { tickets: settlement.tickets } : {}),
        },
        settleResponse,
      );
      if (answer.accepted < settlement.count) {
        this.log.warn(
          { peer: name, sent: settlement.count, accepted: answer.accepted },
          'peer took fewer settlement tickets than sent (spent or invalid)',
        );
      }
      this.ledger.settlementDelivered(name, settlement.id, answer.accepted, Math.floor(this.now()));
    }
    this.contact(name, null);
  }

  private contact(name: string, error: string | null): void {
    const state = this.states.get(name);
    if (!state) return;
    if (state.up === false) this.log.info({ peer: name }, 'peer reachable again');
    state.up = true;
    state.lastContactAt = Math.floor(this.now());
    state.lastError = error;
  }

  private lost(name: string, error: string): void {
    const state = this.states.get(name);
    if (!state) return;
    if (state.up !== false) this.log.warn({ peer: name, err: error }, 'peer unreachable');
    state.up = false;
    state.lastError = error;
  }

  // --- what operators see ---

  status(): PeerStatus[] {
    return [...this.byName.values()].map((peer) => {
      const descriptor = this.keys.descriptor(peer.name);
      return {
        name: peer.name,
        url: peer.url,
        identity: peer.identity,
        acceptTickets: peer.acceptTickets,
        ...(this.states.get(peer.name) ?? { up: null, lastContactAt: null, lastError: null }),
        keys: descriptor?.tickets.keys.map((k) => k.keyId) ?? [],
        balance: this.ledger.balance(peer.name),
      };
    });
  }

  /** powbridge_peer_* gauges, read from the ledger at scrape time. */
  registerMetrics(registry: Registry): void {
    const registers = [registry];
    const peers = () => this.status();
    new Gauge({
      name: 'powbridge_peer_up',
      help: 'Whether the last exchange with a peer relay succeeded (1), failed (0), or none yet (-1).',
      labelNames: ['peer'] as const,
      registers,
      collect() {
        for (const p of peers()) this.set({ peer: p.name }, p.up === null ? -1 : p.up ? 1 : 0);
      },
    });
    new Gauge({
      name: 'powbridge_peer_conflicts',
      help: 'Serials redeemed both here and at a peer (double spends across a partition).',
      labelNames: ['peer'] as const,
      registers,
      collect() {
        for (const p of peers()) this.set({ peer: p.name }, p.balance.conflicts);
      },
    });
    new Gauge({
      name: 'powbridge_peer_tickets',
      help: 'Peer tickets: served here, unpaid to us, owed by us, accepted offline and not synced.',
      labelNames: ['peer', 'kind'] as const,
      registers,
      collect() {
        for (const p of peers()) {
          const b = p.balance;
          this.set({ peer: p.name, kind: 'served' }, b.served);
          this.set({ peer: p.name, kind: 'unpaid_to_us' }, b.unpaidToUs);
          this.set({ peer: p.name, kind: 'we_owe' }, b.weOwe);
          this.set({ peer: p.name, kind: 'owed_sync' }, b.owedSync);
        }
      },
    });
  }
}

function serialJson(spend: SpendRequest): SpentSerialJson {
  return { serial: bytesToHex(spend.serial), keyId: bytesToHex(spend.keyId), day: spend.day };
}

export function newId(): string {
  return randomBytes(12).toString('base64url');
}
