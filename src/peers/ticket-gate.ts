import { randomBytes } from 'node:crypto';
import { bytesToHex } from '@noble/hashes/utils.js';
import { type Logger, silentLogger } from '../log.js';
import { RpcError, RpcErrorCode } from '../protocol/errors.js';
import type { SpendRequest, SpentLog } from '../storage/spent-log.js';
import type { ForeignTicketGate } from '../tickets/redeemer.js';
import { PeerRefusedError, PeerUnreachableError } from './peer-client.js';
import type { PeerConfig } from './peer-config.js';
import type { PeerLedger } from '../storage/peer-ledger.js';
import { PEER_PREFIX, type ReserveResult, reserveResponse } from './peer-messages.js';
import type { PeerRoster } from './peer-roster.js';
import type { PeerTicketRefusal, RefusingReason } from './peer-status.js';

/**
 * A peer's ticket redeemed here (docs/design.md §7): refused while the peer owes too much,
 * reserved at the peer before the local spend (so it is single-use across both relays), or
 * accepted while the peer is unreachable when the operator allows it. Served tickets are
 * recorded in the ledger and billed every `paymentEvery`.
 */

/**
 * Whether this relay refuses a peer's tickets because its billed tickets went unpaid: the one
 * rule, shared by the gate and by what `powbridge peers status` reports.
 */
export function refusesTicketsOf(
  peer: Pick<PeerConfig, 'acceptTickets' | 'maxUnpaid'>,
  unpaidToUs: number,
): boolean {
  return peer.acceptTickets && unpaidToUs >= peer.maxUnpaid;
}

/**
 * Why every ticket of a peer is refused here right now, or null while they are accepted
 * (/v1/status `peers[].refusing`), in the order the gate checks: not accepted by config, the
 * unpaid limit (36), unreachable without `acceptWhenOffline` (33), refusing our reservations
 * (36).
 */
export function refusingReason(
  peer: Pick<PeerConfig, 'acceptTickets' | 'maxUnpaid' | 'acceptWhenOffline'>,
  unpaidToUs: number,
  link: { up: boolean | null; refusesUs: boolean },
): RefusingReason | null {
  if (!peer.acceptTickets) return 'notAccepted';
  if (refusesTicketsOf(peer, unpaidToUs)) return 'unpaidLimit';
  if (link.up === false && !peer.acceptWhenOffline) return 'offline';
  if (link.refusesUs) return 'peerRefused';
  return null;
}

/** Ids of payment requests and settlements: random, so two relays never collide. */
export function newId(): string {
  return randomBytes(12).toString('base64url');
}

export interface PeerTicketGateOptions {
  roster: PeerRoster;
  ledger: PeerLedger;
  store: Pick<SpentLog, 'isSpent'>;
  /** Told to the client as retryAfter while a peer is unreachable and not accepted offline. */
  retryAfterSeconds: number;
  /** Deliver a new payment request now rather than at the next sync round. */
  syncSoon: (peer: string) => void;
  logger?: Logger;
}

export class PeerTicketGate implements ForeignTicketGate {
  private readonly log: Logger;

  constructor(private readonly options: PeerTicketGateOptions) {
    this.log = options.logger ?? silentLogger;
  }

  async admit(owner: string, spend: SpendRequest): Promise<{ offline: boolean }> {
    const { roster, ledger, store } = this.options;
    const reached = roster.reach(owner);
    if (!reached) throw new RpcError(RpcErrorCode.unknownTicketKey, 'unknown ticket key');
    const { peer, client } = reached;
    if (!peer.acceptTickets) {
      throw this.refused(owner, 'notAccepted', RpcErrorCode.unknownTicketKey, 'unknown ticket key');
    }
    const unpaid = await ledger.unpaidToUs(owner);
    if (refusesTicketsOf(peer, unpaid)) {
      throw this.refused(
        owner,
        'unpaidLimit',
        RpcErrorCode.peerNotTrusted,
        `peer not trusted: tickets of ${owner} are not accepted here until it settles its debt`,
        `${unpaid} billed tickets unpaid (maxUnpaid ${peer.maxUnpaid})`,
      );
    }
    if (await store.isSpent(spend.serial)) {
      throw this.refused(owner, 'spent', RpcErrorCode.ticketSpent, 'ticket already spent');
    }
    let result: ReserveResult;
    try {
      const serial = bytesToHex(spend.serial);
      const answer = await client.call(
        'POST',
        `${PEER_PREFIX}/reserve`,
        { serials: [{ serial, keyId: bytesToHex(spend.keyId), day: spend.day }] },
        reserveResponse,
      );
      roster.contact(owner, null);
      const mine = answer.results.find((r) => r.serial === serial);
      if (!mine) throw new PeerUnreachableError(`peer ${owner}: reserve answer lacks the serial`);
      result = mine.result;
    } catch (err) {
      if (err instanceof PeerRefusedError) {
        roster.contact(owner, err.message);
        throw this.refused(
          owner,
          'peerRefused',
          RpcErrorCode.peerNotTrusted,
          `peer not trusted: ${owner} refused to reserve the ticket`,
          err.message,
        );
      }
      if (!(err instanceof PeerUnreachableError)) throw err;
      roster.lost(owner, err.message);
      if (!peer.acceptWhenOffline) {
        throw this.refused(
          owner,
          'offline',
          RpcErrorCode.issuerBusy,
          "the ticket's relay is unreachable; retry later",
          err.message,
          { retryAfter: Math.ceil(this.options.retryAfterSeconds) },
        );
      }
      return { offline: true };
    }
    if (result === 'spent') {
      throw this.refused(owner, 'spent', RpcErrorCode.ticketSpent, 'ticket already spent');
    }
    if (result === 'unknown_key') {
      throw this.refused(owner, 'unknownKey', RpcErrorCode.unknownTicketKey, 'unknown ticket key');
    }
    return { offline: false };
  }

  /** The error for the client, told to the roster first (the tally counts it, the log may say it). */
  private refused(
    owner: string,
    reason: PeerTicketRefusal,
    code: RpcErrorCode,
    message: string,
    detail?: string,
    data?: unknown,
  ): RpcError {
    this.options.roster.emit('refused', {
      peer: owner,
      reason,
      ...(detail === undefined ? {} : { detail }),
    });
    return new RpcError(code, message, data);
  }

  async served(
    owner: string,
    spend: SpendRequest,
    seq: number,
    admission: { offline: boolean },
  ): Promise<void> {
    const { roster, ledger } = this.options;
    const peer = roster.peer(owner);
    if (!peer) return;
    const { offline } = admission;
    try {
      const request = await ledger.recordServed(
        owner,
        { serial: spend.serial, keyId: spend.keyId, day: spend.day, seq, at: spend.at, offline },
        peer.paymentEvery,
        newId,
      );
      roster.emit('served', { peer: owner, offline });
      if (request) {
        roster.emit('billed', { peer: owner, id: request.id, count: request.count });
        this.options.syncSoon(owner);
      }
    } catch (err) {
      // The spend is recorded and the grant is owed; billing this one ticket is what is lost.
      this.log.error({ peer: owner, err: String(err) }, 'could not record a served ticket');
    }
  }
}
