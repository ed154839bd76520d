import { RpcError, RpcErrorCode } from '../protocol/errors.js';
import { type AnyTicket, decodeAnyTicket } from './any-ticket.js';
import { GrantBook } from './grant-book.js';
import { csprng, type RandomBytes, TicketFormatError } from './group.js';
import { type Keyring, type KeyValidity, utcDay } from './keyring.js';
import { type RsaPublicKey, RsaVerifier } from './rsa-scheme.js';
import { InfoPointCache, ticketMessage, verifySignature } from './scheme.js';
import { SpendBatcher } from './spend-batcher.js';
import {
  type SpendRequest,
  type SpendResult,
  SpentStoreBusyError,
  type SpentStore,
} from './spent-store.js';
import { TICKET_VERSION } from './ticket.js';
import { TICKET_V2_VERSION, ticketMessageV2, ticketV2Serial } from './ticket-v2.js';

/**
 * `ticket.redeem` (docs/design.md §5, §6.3): a ticket in, a priority grant out. The checks run
 * cheapest first, and the costly ones only on input that passed the cheap ones: decoding and
 * the day check bound which (key, day) pairs reach the hash-to-curve of the info point and
 * the signature check, so garbage cannot fill the info-point cache or burn CPU on
 * unknown keys. The spend is recorded durably before the grant exists; a crash in between
 * loses the grant, never the record. Nothing about a ticket or its serial is logged or kept
 * beside the grant: only counts.
 */

export const DEFAULT_WINDOW_SECONDS = 600;
/** A ticket is redeemable on its issue day and on the next one (the paper: ~48 h). */
export const REDEEMABLE_DAYS = 2;
/** Extra days the spent store keeps, so a clock stepped back a day cannot reopen pruned serials. */
export const PRUNE_MARGIN_DAYS = 1;
/** RSA keys whose derived day keys are cached (own and peers'). */
const MAX_RSA_VERIFIERS = 64;

export type GrantClass = 'paid';

export interface Grant {
  /** 32 random bytes, base64url: the `authorization: Priority <token>` of the tunnel. */
  token: string;
  class: GrantClass;
  /** Unix seconds. */
  expiresAt: number;
}

/**
 * Where tickets of other relays go (Protocol 2, docs/design.md §7): the peers module decides whether
 * this relay may serve a peer's ticket and reserves its serial at the peer first. Kept as an
 * interface so the ticket code does not depend on the peer code.
 */
export interface ForeignTicketGate {
  /** Before the local spend; throws RpcError (32, 33, 36) to refuse. */
  admit(owner: string, spend: SpendRequest): Promise<{ offline: boolean }>;
  /** After the local spend is durable; must not throw (the grant is owed by then). */
  served(owner: string, spend: SpendRequest, seq: number, admission: { offline: boolean }): void;
}

export interface RedeemerOptions {
  /** Admits tickets of peer relays; without it only our own keys are redeemable. */
  foreign?: ForeignTicketGate;
  keyring: Keyring;
  store: SpentStore;
  grants?: GrantBook;
  /** How long a grant lasts (the ticket's Δt), in seconds. */
  windowSeconds?: number;
  infoPoints?: InfoPointCache;
  /** Source of grant tokens; a CSPRNG unless a test passes fixed bytes. */
  random?: RandomBytes;
}

export interface RedeemCounts {
  redeemed: number;
  malformed: number;
  unknownKey: number;
  wrongDay: number;
  badSignature: number;
  spent: number;
}

/** The oldest issue day whose serials must stay in the spent store on `today`. */
export function oldestKeptDay(today: number): number {
  return today - (REDEEMABLE_DAYS - 1) - PRUNE_MARGIN_DAYS;
}

/** Why a ticket of `day` cannot be redeemed on `today` with a key of `validity`, or null. */
function wrongDay(day: number, today: number, validity: KeyValidity): string | null {
  if (day > today) return 'ticket is from a future day';
  if (day < today - (REDEEMABLE_DAYS - 1)) return 'ticket expired';
  // The key's window constrains the issue day; the ticket's own two days may run past it.
  if (day < validity.notBeforeDay || day > validity.notAfterDay) {
    return "ticket day is outside its key's validity";
  }
  return null;
}

export class Redeemer {
  readonly grants: GrantBook;
  readonly windowSeconds: number;
  private readonly keyring: Keyring;
  private readonly store: SpentStore;
  private readonly batcher: SpendBatcher;
  private readonly infoPoints: InfoPointCache;
  private readonly random: RandomBytes;
  private readonly foreign: ForeignTicketGate | undefined;
  private readonly rsaVerifiers = new Map<string, RsaVerifier>();
  private readonly tally: RedeemCounts = {
    redeemed: 0,
    malformed: 0,
    unknownKey: 0,
    wrongDay: 0,
    badSignature: 0,
    spent: 0,
  };

  constructor(options: RedeemerOptions) {
    const window = options.windowSeconds ?? DEFAULT_WINDOW_SECONDS;
    if (!Number.isInteger(window) || window <= 0) {
      throw new RangeError('windowSeconds must be a positive integer');
    }
    this.windowSeconds = window;
    this.keyring = options.keyring;
    this.store = options.store;
    this.batcher = new SpendBatcher(options.store);
    this.grants = options.grants ?? new GrantBook();
    this.infoPoints = options.infoPoints ?? new InfoPointCache();
    this.random = options.random ?? csprng;
    this.foreign = options.foreign;
  }

  /** Verify and spend one ticket; throws RpcError 30/31/32/33/35 on refusal. */
  redeem(ticketText: unknown, nowSeconds: number): Grant {
    const { request, owner } = this.check(ticketText, nowSeconds);
    if (owner !== 'self' && this.foreign) {
      // A peer's ticket needs the peer asked first, which cannot happen synchronously.
      throw new RpcError(RpcErrorCode.unknownTicketKey, 'unknown ticket key');
    }
    return this.grantFor(this.spendNow(request), request.at);
  }

  /**
   * The same, with the spend group-committed with other redemptions of the same moment (one
   * fsync for all of them); the grant still comes only after the commit.
   */
  async redeemBatched(ticketText: unknown, nowSeconds: number, topUp?: string): Promise<Grant> {
    const { request, owner } = this.check(ticketText, nowSeconds);
    // Without a gate the keyring alone decides which keys count (as in the tests' keyrings).
    const gate = owner === 'self' ? undefined : this.foreign;
    let admission: { offline: boolean } | undefined;
    try {
      admission = gate ? await gate.admit(owner, request) : undefined;
    } catch (err) {
      if (err instanceof RpcError && err.code === RpcErrorCode.ticketSpent) this.tally.spent++;
      throw err;
    }
    let spend: SpendResult;
    try {
      spend = await this.batcher.spend(request);
    } catch (err) {
      throw busyAsRetry(err);
    }
    if (spend.spent && gate && admission) gate.served(owner, request, spend.seq, admission);
    return this.grantFor(spend, request.at, topUp);
  }

  /**
   * Spend one of our own tickets without granting anything: a peer pays its debt with
   * tickets it earned by mining for us (Protocol 2 settlement by work). Same checks and the
   * same durable spend as a redemption; false if the ticket is not good or already spent.
   */
  spendForSettlement(ticketText: string, nowSeconds: number, origin: string): boolean {
    try {
      const { request, owner } = this.check(ticketText, nowSeconds);
      if (owner !== 'self') return false;
      return this.store.trySpend({ ...request, origin }).spent;
    } catch (err) {
      if (err instanceof RpcError) return false;
      throw err;
    }
  }

  /** Everything but the spend: format, key, day, signature. Throws RpcError 30/31/35. */
  private check(ticketText: unknown, nowSeconds: number): { request: SpendRequest; owner: string } {
    if (!Number.isFinite(nowSeconds) || nowSeconds < 0) throw new RangeError('bad time');
    const now = Math.floor(nowSeconds);

    let ticket: AnyTicket;
    try {
      ticket = decodeAnyTicket(ticketText);
    } catch (err) {
      if (!(err instanceof TicketFormatError)) throw err;
      this.tally.malformed++;
      throw new RpcError(RpcErrorCode.badTicketSignature, 'malformed ticket');
    }

    const accepted = this.keyring.acceptedKey(Buffer.from(ticket.keyId).toString('hex'));
    if (accepted === undefined) {
      this.tally.unknownKey++;
      throw new RpcError(RpcErrorCode.unknownTicketKey, 'unknown ticket key');
    }

    const dayProblem = wrongDay(ticket.day, utcDay(now), accepted);
    if (dayProblem !== null) {
      this.tally.wrongDay++;
      throw new RpcError(RpcErrorCode.ticketExpired, dayProblem);
    }

    // The signature is checked under the key we hold for the id (never one the ticket
    // brings), with the day as the public information; a ticket of one scheme under a key of
    // the other is a bad signature, not a format error.
    let serial: Uint8Array | null = null;
    if (ticket.version === TICKET_VERSION && accepted.scheme !== 'rsa') {
      const { info, z } = this.infoPoints.get(accepted.key.keyId, ticket.day);
      const message = ticketMessage(ticket.v1.xc);
      if (verifySignature(accepted.key, z, info, message, ticket.v1.signature)) serial = message;
    } else if (ticket.version === TICKET_V2_VERSION && accepted.scheme === 'rsa') {
      const { v2 } = ticket;
      const message = ticketMessageV2(accepted.key.keyId, v2.day, v2.nonce);
      if (this.rsaVerifier(accepted.key).verify(v2.day, message, v2.signature)) {
        serial = ticketV2Serial(v2);
      }
    }
    if (serial === null) {
      this.tally.badSignature++;
      throw new RpcError(RpcErrorCode.badTicketSignature, 'bad ticket signature');
    }
    return {
      request: { serial, keyId: accepted.key.keyId, day: ticket.day, at: now },
      owner: accepted.owner,
    };
  }

  /** One verifier per RSA key: it caches the day's derived public key. */
  private rsaVerifier(key: RsaPublicKey): RsaVerifier {
    const id = Buffer.from(key.keyId).toString('hex');
    let verifier = this.rsaVerifiers.get(id);
    if (verifier?.key.n !== key.n) {
      verifier = new RsaVerifier(key);
      this.rsaVerifiers.set(id, verifier);
      // Bounded like the keys themselves: a relay holds a handful, peers a few more.
      if (this.rsaVerifiers.size > MAX_RSA_VERIFIERS) {
        const oldest = this.rsaVerifiers.keys().next().value;
        if (oldest !== undefined) this.rsaVerifiers.delete(oldest);
      }
    }
    return verifier;
  }

  private spendNow(request: SpendRequest): SpendResult {
    try {
      return this.store.trySpend(request);
    } catch (err) {
      throw busyAsRetry(err);
    }
  }

  /**
   * Only a recorded spend earns a grant. With `topUp`, the token of a live grant, the ticket
   * is added to that grant instead (docs/design.md §6.3: several tickets per window move the
   * circuit to a higher group) and the grant lasts a window from now; the ticket counts for
   * the group during that window (GrantBook).
   */
  private grantFor(spend: SpendResult, now: number, topUp?: string): Grant {
    if (!spend.spent) {
      this.tally.spent++;
      throw new RpcError(RpcErrorCode.ticketSpent, 'ticket already spent');
    }
    const expiresAt = now + this.windowSeconds;
    let token = topUp;
    if (token === undefined || this.grants.topUp(token, expiresAt, now) === undefined) {
      token = Buffer.from(this.random(32)).toString('base64url');
      this.grants.add(token, { expiresAt, tickets: 1 }, now);
    }
    this.tally.redeemed++;
    return { token, class: 'paid', expiresAt };
  }

  /** Drop spent serials of days no ticket can be redeemed on any more; returns how many. */
  pruneSpent(nowSeconds: number): number {
    return this.store.prune(oldestKeptDay(utcDay(nowSeconds)));
  }

  /** How many redemptions succeeded and why the others were refused (for stats). */
  counts(): Readonly<RedeemCounts> {
    return { ...this.tally };
  }
}

/** Nothing was recorded, so the ticket is still good: the client may simply retry. */
function busyAsRetry(err: unknown): unknown {
  return err instanceof SpentStoreBusyError
    ? new RpcError(RpcErrorCode.issuerBusy, 'relay busy, retry', { retryAfter: 1 })
    : err;
}
