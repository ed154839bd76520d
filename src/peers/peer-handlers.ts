import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import { type Logger, silentLogger } from '../log.js';
import type { SpentLog } from '../storage/spent-log.js';
import type { Keyring } from '../tickets/keyring.js';
import type { PeerConfig } from './peer-config.js';
import { type PaymentRequest, type PeerLedger, serialsDigest } from '../storage/peer-ledger.js';
import type { ReserveResult, SpentSerialJson } from './peer-messages.js';
import type { SpendReplicator } from './replication.js';

/**
 * What a peer may ask of us through the peer API (docs/design.md §7), once peer-api.ts has
 * proven who it is and parsed the body: reserve our serials, read our spent log, bill us,
 * settle what it owes us.
 */

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

/** Spends one of our own tickets handed over as payment; true when it verified and was unspent. */
export type SettlementTicketSpender = (
  ticket: string,
  now: number,
  origin: string,
) => Promise<boolean>;

export interface PeerHandlersOptions {
  /** Our own ticket keys: which serials we may reserve and which bills are ours to pay. */
  ownKeys: Pick<Keyring, 'acceptedKey'> & { holdsKey(keyIdHex: string): boolean };
  store: Pick<SpentLog, 'trySpend' | 'lookup' | 'localSince' | 'head'>;
  ledger: PeerLedger;
  replicator: SpendReplicator;
  spendTicket: SettlementTicketSpender;
  now: () => number;
  logger?: Logger;
}

export class PeerHandlers {
  private readonly log: Logger;

  constructor(private readonly options: PeerHandlersOptions) {
    this.log = options.logger ?? silentLogger;
  }

  async reserve(
    peer: PeerConfig,
    serials: readonly SpentSerialJson[],
  ): Promise<{ serial: string; result: ReserveResult }[]> {
    const { ownKeys, store } = this.options;
    const at = Math.floor(this.options.now());
    const results: { serial: string; result: ReserveResult }[] = [];
    // One at a time, in order: a serial listed twice is reserved by its first entry.
    for (const s of serials) {
      // Only our own keys that still verify today (a held key past its last redeemable day does not).
      if (!ownKeys.acceptedKey(s.keyId)) {
        results.push({ serial: s.serial, result: 'unknown_key' });
        continue;
      }
      const serial = hexToBytes(s.serial);
      const spent = await store.trySpend({
        serial,
        keyId: hexToBytes(s.keyId),
        day: s.day,
        at,
        origin: peer.name,
      });
      if (spent.spent) {
        results.push({ serial: s.serial, result: 'reserved' });
        continue;
      }
      // The same peer asking again (its answer was lost) gets the same yes.
      const existing = await store.lookup(serial);
      results.push({
        serial: s.serial,
        result: existing?.origin === peer.name ? 'reserved' : 'spent',
      });
    }
    return results;
  }

  async spentPage(
    peer: PeerConfig,
    after: number,
    limit: number,
  ): Promise<{
    records: (SpentSerialJson & { seq: number; at: number })[];
    more: boolean;
    head: number;
  }> {
    const { store, ledger } = this.options;
    // Asking from `after` says the peer holds all of ours up to there.
    await ledger.setAcked(peer.name, after);
    const records = await store.localSince(after, limit);
    return {
      records: records.map((r) => ({
        seq: r.seq,
        serial: bytesToHex(r.serial),
        keyId: bytesToHex(r.keyId),
        day: r.day,
        at: r.at,
      })),
      more: records.length === limit,
      head: await store.head(),
    };
  }

  async paymentRequest(
    peer: PeerConfig,
    request: Omit<PaymentRequest, 'serials'> & { serials: SpentSerialJson[] },
  ): Promise<{ recorded: boolean; known: number }> {
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
    // The billed serials were spent at the peer: they double as a sync of its log, which also
    // finds those we redeemed too (conflicts), so the ledger can leave them out of what we owe.
    const known = await this.options.replicator.apply(
      peer.name,
      request.serials.map((s) => ({ ...s, at: request.period.to })),
    );
    const recorded = await this.options.ledger.recordRequestIn(
      peer.name,
      { id: request.id, count: request.count, digest: request.digest, period: request.period },
      known,
      Math.floor(this.options.now()),
      serials,
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
  async settle(
    peer: PeerConfig,
    settlement: { id: string; count: number; method: 'operator' | 'work'; tickets?: string[] },
  ): Promise<{ recorded: boolean; accepted: number }> {
    const { ledger, spendTicket } = this.options;
    const now = this.options.now();
    // A retry (our answer was lost): its tickets are spent by now, so answer as before.
    const before = await ledger.receivedSettlement(peer.name, settlement.id);
    if (before !== undefined) return { recorded: false, accepted: before };
    let accepted = settlement.count;
    if (settlement.method === 'work') {
      accepted = 0;
      for (const ticket of settlement.tickets ?? []) {
        if (await spendTicket(ticket, now, peer.name)) accepted++;
      }
      if (accepted === 0) return { recorded: false, accepted: 0 };
    }
    const recorded = await ledger.recordReceived(
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
}
