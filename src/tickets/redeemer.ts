import { RpcError, RpcErrorCode } from '../protocol/errors.js';
import { GrantBook } from './grant-book.js';
import { csprng, type RandomBytes, TicketFormatError } from './group.js';
import { type Keyring, type KeyValidity, utcDay } from './keyring.js';
import { InfoPointCache, ticketMessage, verifySignature } from './scheme.js';
import { SpendBatcher } from './spend-batcher.js';
import {
  type SpendRequest,
  type SpendResult,
  SpentStoreBusyError,
  type SpentStore,
} from './spent-store.js';
import { decodeTicket, type Ticket } from './ticket.js';

/**
 * `ticket.redeem` (DESIGN §5, §6.3): a ticket in, a priority grant out. The checks run
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

export type GrantClass = 'paid';

export interface Grant {
  /** 32 random bytes, base64url: the `authorization: Priority <token>` of the tunnel. */
  token: string;
  class: GrantClass;
  /** Unix seconds. */
  expiresAt: number;
}

export interface RedeemerOptions {
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
  }

  /** Verify and spend one ticket; throws RpcError 30/31/32/33/35 on refusal. */
  redeem(ticketText: unknown, nowSeconds: number): Grant {
    const request = this.check(ticketText, nowSeconds);
    return this.grantFor(this.spendNow(request), request.at);
  }

  /**
   * The same, with the spend group-committed with other redemptions of the same moment (one
   * fsync for all of them); the grant still comes only after the commit.
   */
  async redeemBatched(ticketText: unknown, nowSeconds: number, topUp?: string): Promise<Grant> {
    const request = this.check(ticketText, nowSeconds);
    let spend: SpendResult;
    try {
      spend = await this.batcher.spend(request);
    } catch (err) {
      throw busyAsRetry(err);
    }
    return this.grantFor(spend, request.at, topUp);
  }

  /** Everything but the spend: format, key, day, signature. Throws RpcError 30/31/35. */
  private check(ticketText: unknown, nowSeconds: number): SpendRequest {
    if (!Number.isFinite(nowSeconds) || nowSeconds < 0) throw new RangeError('bad time');
    const now = Math.floor(nowSeconds);

    let ticket: Ticket;
    try {
      ticket = decodeTicket(ticketText);
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

    // info binds the key we verify with (not just the id the ticket claims) to the day.
    const { info, z } = this.infoPoints.get(accepted.key.keyId, ticket.day);
    const serial = ticketMessage(ticket.xc);
    if (!verifySignature(accepted.key, z, info, serial, ticket.signature)) {
      this.tally.badSignature++;
      throw new RpcError(RpcErrorCode.badTicketSignature, 'bad ticket signature');
    }
    return { serial, keyId: accepted.key.keyId, day: ticket.day, at: now };
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
   * is added to that grant instead (DESIGN §6.3: several tickets per window move the
   * circuit to a higher group) and its window starts again.
   */
  private grantFor(spend: SpendResult, now: number, topUp?: string): Grant {
    if (!spend.spent) {
      this.tally.spent++;
      throw new RpcError(RpcErrorCode.ticketSpent, 'ticket already spent');
    }
    const live = topUp === undefined ? undefined : this.grants.lookup(topUp, now);
    const grant: Grant = {
      token: live && topUp ? topUp : Buffer.from(this.random(32)).toString('base64url'),
      class: 'paid',
      expiresAt: now + this.windowSeconds,
    };
    const entry = { expiresAt: grant.expiresAt, tickets: (live?.tickets ?? 0) + 1 };
    if (live) this.grants.renew(grant.token, entry, now);
    else this.grants.add(grant.token, entry, now);
    this.tally.redeemed++;
    return grant;
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
