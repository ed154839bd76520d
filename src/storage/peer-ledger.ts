import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import type { PeerBalance } from '../peers/peer-status.js';

/**
 * What a relay remembers about its peers (docs/design.md §7), as the rest of the relay sees it:
 *
 * - replication cursors: how far we applied each peer's spent log (`pulled`), and how far
 *   each peer says it applied ours (`acked`: the cursor it last asked from);
 * - tickets of a peer we served as its backup (`served`): the billing base, and, for those
 *   accepted while the peer was unreachable, what we still owe it a sync of;
 * - payment requests we sent (creditor) and received (debtor), and settlements both ways;
 * - conflicts: serials spent here and at a peer (a double spend across a partition). Neither
 *   side pays for one: the creditor leaves it out of what it bills and counts as billed, the
 *   debtor leaves the ones a bill lists out of what it owes (`billed_conflicts`), so both
 *   books agree once each has seen the other's log.
 *
 * Two engines, like the spent log: one SQLite file per relay (src/peers/peer-ledger.ts,
 * `peers.sqlite`) and the PostgreSQL database of a relay family
 * (src/storage/postgres-peer-ledger.ts), where every instance of the family shares one ledger:
 * to a peer the family is one relay. The CLI (`powbridge peers settle`) writes settlements into
 * the same place while the relays run, and the sync loop delivers them.
 *
 * What every implementation promises: cursors only move forward; `recordServed` bills
 * `paymentEvery` unbilled tickets in the same transaction as the one that completes them, so
 * no ticket is billed twice even when instances record at once; `recordPaid` checks what we
 * owe and records under one lock, so two settles cannot together record more than that;
 * everything keyed by an id is idempotent.
 */

/** A peer's name (config `peers[].name`): at most this long. */
export const MAX_PEER_NAME_LENGTH = 64;
/** Ids of payment requests and settlements, chosen by us or by a peer: at most this long. */
export const MAX_LEDGER_ID_LENGTH = 64;

export interface ServedTicket {
  serial: Uint8Array;
  keyId: Uint8Array;
  day: number;
  seq: number;
  at: number;
  offline: boolean;
}

export interface PaymentRequest {
  id: string;
  count: number;
  /** hex SHA-256 of the sorted serials, concatenated. */
  digest: string;
  period: { from: number; to: number };
  serials: { serial: Uint8Array; keyId: Uint8Array; day: number }[];
}

/** A payment request a peer sent us, as listed for the operator. */
export type ReceivedRequest = Omit<PaymentRequest, 'serials'> & { receivedAt: number };

export interface PendingSettlement {
  id: string;
  count: number;
  method: 'operator' | 'work';
  at: number;
  tickets?: string[];
}

export interface Conflict {
  serial: Uint8Array;
  keyId: Uint8Array;
  day: number;
  oursAt: number;
  theirsAt: number;
}

export interface PeerLedger {
  // --- replication cursors ---
  pulled(peer: string): Promise<number>;
  setPulled(peer: string, cursor: number): Promise<void>;
  /** The peer asked for our log after `cursor`: it holds everything up to there. */
  setAcked(peer: string, cursor: number): Promise<void>;
  /** The peer's log was rebuilt (restored from a backup): read it again from the start. */
  resetPulled(peer: string): Promise<void>;

  // --- served tickets and payment requests (we are the creditor) ---
  /**
   * Record a peer's ticket we granted priority for; when `paymentEvery` are unbilled, bill
   * them in the same transaction (the request is then delivered by the sync loop until the
   * peer confirms it). Resolves the new request, if one was made.
   */
  recordServed(
    peer: string,
    ticket: ServedTicket,
    paymentEvery: number,
    newId: () => string,
  ): Promise<PaymentRequest | null>;
  /** Requests the peer has not confirmed yet, oldest first, with their serials. */
  undeliveredRequests(peer: string): Promise<PaymentRequest[]>;
  markRequestDelivered(id: string, at: number): Promise<void>;

  // --- payment requests received (we are the debtor) ---
  /**
   * Idempotent by (peer, id); resolves false if this id was already recorded. Those of its
   * `serials` that are conflicts with the peer (recorded before this call: the bill's serials
   * were applied as a sync first) are noted as not owed.
   */
  recordRequestIn(
    peer: string,
    request: Omit<PaymentRequest, 'serials'>,
    known: number,
    at: number,
    serials?: readonly Uint8Array[],
  ): Promise<boolean>;
  listRequestsIn(peer: string): Promise<ReceivedRequest[]>;

  // --- settlements ---
  /**
   * The debtor's operator records a payment (delivered to the peer by the sync loop). Rejects
   * with RangeError, recording nothing, when it is more than we owe.
   */
  recordPaid(
    peer: string,
    id: string,
    count: number,
    method: 'operator' | 'work',
    at: number,
    tickets?: readonly string[],
  ): Promise<void>;
  /** The count of a settlement the peer already told us about, if any (retries are normal). */
  receivedSettlement(peer: string, id: string): Promise<number | undefined>;
  /** A peer told us it settled; idempotent by (peer, id). */
  recordReceived(
    peer: string,
    id: string,
    count: number,
    method: string,
    at: number,
  ): Promise<boolean>;
  undeliveredSettlements(peer: string): Promise<PendingSettlement[]>;
  /**
   * The creditor confirmed a settlement. For 'work' it may have taken fewer tickets than
   * sent (some did not verify): count only what it took, and drop the ticket strings, which
   * are spent or worthless now.
   */
  settlementDelivered(peer: string, id: string, accepted: number, at: number): Promise<void>;

  // --- conflicts ---
  /** Resolves true the first time this (serial, peer) conflict is seen. */
  recordConflict(peer: string, conflict: Conflict, at: number): Promise<boolean>;
  conflicts(peer: string): Promise<(Conflict & { detectedAt: number })[]>;

  // --- balances ---
  /**
   * Billed tickets the peer has not settled: what `maxUnpaid` limits. Its own method because
   * every redemption of the peer's tickets asks, and needs none of the rest of `balance`.
   */
  unpaidToUs(peer: string): Promise<number>;
  balance(peer: string): Promise<PeerBalance>;

  close(): Promise<void>;
}

/** hex SHA-256 over the serials in byte order: what a PAYMENT_REQUEST commits to. */
export function serialsDigest(serials: readonly Uint8Array[]): string {
  const sorted = serials.map((s) => Buffer.from(s)).sort((x, y) => Buffer.compare(x, y));
  return bytesToHex(sha256(Buffer.concat(sorted)));
}

// Checks on input shared by both engines: each throws RangeError, before anything is written.

export function checkPeerName(peer: string): void {
  if (peer.length === 0 || peer.length > MAX_PEER_NAME_LENGTH) throw new RangeError('bad peer');
}

export function checkLedgerId(id: string): void {
  if (id.length === 0 || id.length > MAX_LEDGER_ID_LENGTH) throw new RangeError('bad id');
}

export function checkCursor(cursor: number): void {
  if (!Number.isSafeInteger(cursor) || cursor < 0) throw new RangeError('bad cursor');
}

/** A count of tickets, or unix seconds: a non-negative safe integer. */
export function checkWhole(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`bad ${what}`);
}

export function checkServed(peer: string, ticket: ServedTicket, paymentEvery: number): void {
  checkPeerName(peer);
  if (ticket.serial.length !== 32) throw new RangeError('serial must be 32 bytes');
  if (ticket.keyId.length !== 8) throw new RangeError('keyId must be 8 bytes');
  checkWhole(ticket.day, 'day');
  checkWhole(ticket.seq, 'seq');
  checkWhole(ticket.at, 'at');
  if (!Number.isSafeInteger(paymentEvery) || paymentEvery < 1) {
    throw new RangeError('paymentEvery must be at least 1');
  }
}

/** A settlement we pay: 'work' carries exactly `count` tickets, 'operator' none. */
export function checkPaid(
  id: string,
  count: number,
  method: 'operator' | 'work',
  tickets: readonly string[] | undefined,
): void {
  checkLedgerId(id);
  if (!Number.isSafeInteger(count) || count < 1) throw new RangeError('count must be at least 1');
  if ((method === 'work') !== (tickets !== undefined) || (tickets && tickets.length !== count)) {
    throw new RangeError("a 'work' settlement carries exactly `count` tickets, 'operator' none");
  }
}
