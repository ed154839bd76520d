import { type ExpensiveWorkBudget, unlimitedBudget } from '../lib/work-budget.js';
import { RpcError, RpcErrorCode } from '../protocol/errors.js';
import { SpentStoreBusyError, StorageUnavailableError } from '../storage/errors.js';
import type { GrantStorage } from '../storage/grant-storage.js';
import type { SpendRequest, SpendResult, SpentLog } from '../storage/spent-log.js';
import { type AnyTicket, decodeAnyTicket } from './any-ticket.js';
import { GrantBook, grantId } from './grant-book.js';
import { csprng, type RandomBytes, TicketFormatError } from './group.js';
import { type AcceptedKey, type Keyring, type KeyValidity, utcDay } from './keyring.js';
import { type InfoPointCache, ticketMessage } from './scheme.js';
import { SpendBatcher } from './spend-batcher.js';
import { TICKET_VERSION } from './ticket.js';
import { TICKET_V2_VERSION, ticketV2Serial } from './ticket-v2.js';
import {
  inlineTicketVerifier,
  SignatureChecker,
  type TicketKey,
  type TicketVerifier,
  TicketVerifierBusy,
} from './ticket-verifier.js';

/**
 * `ticket.redeem` (docs/design.md §5, §6.3): a ticket in, a priority grant out. The checks run
 * cheapest first, and the costly one only on input that passed the cheap ones: decoding, the
 * key, the day and a read of the spent store bound which tickets reach the signature check,
 * so garbage cannot fill the info-point cache or burn CPU on unknown keys or spent serials.
 * The signature check then takes a unit of the relay-wide budget for expensive work and runs
 * in the verifier (a worker pool at the relay); no unit or a full queue is answered 38 with
 * `retryAfter`, with nothing recorded. The spend is recorded durably before the grant exists;
 * a crash in between loses the grant, never the record. Nothing about a ticket or its serial
 * is logged or kept beside the grant: only counts.
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

/**
 * Where tickets of other relays go (Protocol 2, docs/design.md §7): the peers module decides whether
 * this relay may serve a peer's ticket and reserves its serial at the peer first. Kept as an
 * interface so the ticket code does not depend on the peer code.
 */
export interface ForeignTicketGate {
  /** Before the local spend; throws RpcError (32, 33, 36) to refuse. */
  admit(owner: string, spend: SpendRequest): Promise<{ offline: boolean }>;
  /** After the local spend is durable; must not reject (the grant is owed by then). */
  served(
    owner: string,
    spend: SpendRequest,
    seq: number,
    admission: { offline: boolean },
  ): Promise<void>;
}

export interface RedeemerOptions {
  /** Admits tickets of peer relays; without it only our own keys are redeemable. */
  foreign?: ForeignTicketGate;
  keyring: Keyring;
  /** The spent store: SQLite (src/tickets/spent-store.ts) or PostgreSQL (src/storage/). */
  store: SpentLog;
  grants?: GrantBook;
  /** Where grants are written before the redemption answers; without it they live in memory. */
  grantStore?: GrantStorage;
  /**
   * The grant store is a family's, shared with other instances: a top-up names a grant
   * another instance may have made, so one unknown here is looked up there first.
   */
  grantsShared?: boolean;
  /** How long a grant lasts (the ticket's Δt), in seconds. */
  windowSeconds?: number;
  infoPoints?: InfoPointCache;
  /** Source of grant tokens; a CSPRNG unless a test passes fixed bytes. */
  random?: RandomBytes;
  /**
   * Where redeemBatched checks signatures: the relay passes its worker pool; the default
   * checks on the calling thread.
   */
  verifier?: TicketVerifier;
  /** The relay-wide budget a signature check of redeemBatched takes a unit of; default none. */
  budget?: ExpensiveWorkBudget;
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

/** A ticket that passed the cheap checks, with what its signature check and spend need. */
interface Screened {
  ticket: AnyTicket;
  key: TicketKey;
  request: SpendRequest;
  owner: string;
}

const OVERLOADED_MESSAGE = 'relay overloaded, retry';
/** Told to a client while the ticket database is unreachable. */
const STORAGE_RETRY_SECONDS = 5;

/** The key a ticket is checked under, if the ticket is of the key's scheme. */
function keyFor(ticket: AnyTicket, accepted: AcceptedKey): TicketKey | null {
  if (ticket.version === TICKET_VERSION && accepted.scheme !== 'rsa') {
    return { scheme: 'ao', key: accepted.key };
  }
  if (ticket.version === TICKET_V2_VERSION && accepted.scheme === 'rsa') {
    return { scheme: 'rsa', key: accepted.key };
  }
  return null;
}

export class Redeemer {
  readonly grants: GrantBook;
  readonly windowSeconds: number;
  private readonly grantStore: GrantStorage | undefined;
  private readonly grantsShared: boolean;
  private readonly keyring: Keyring;
  private readonly store: SpentLog;
  private readonly batcher: SpendBatcher;
  private readonly signatures: SignatureChecker;
  private readonly verifier: TicketVerifier;
  private readonly budget: ExpensiveWorkBudget;
  private readonly random: RandomBytes;
  private readonly foreign: ForeignTicketGate | undefined;
  /** Redemptions answered 38 (budget spent or verifier queue full): not a verdict on the ticket. */
  private shed = 0;
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
    this.grantStore = options.grantStore;
    this.grantsShared = options.grantsShared ?? false;
    this.signatures = new SignatureChecker(
      options.infoPoints ? { infoPoints: options.infoPoints } : {},
    );
    this.verifier = options.verifier ?? inlineTicketVerifier(this.signatures);
    this.budget = options.budget ?? unlimitedBudget;
    this.random = options.random ?? csprng;
    this.foreign = options.foreign;
  }

  /**
   * Verify and spend one ticket, the signature checked on the calling thread, outside the
   * budget and without group commit (the benchmark's baseline); rejects with RpcError
   * 30/31/32/33/35/38 on refusal. Peers' tickets are not redeemed here.
   */
  async redeem(ticketText: unknown, nowSeconds: number): Promise<Grant> {
    const { request, owner } = await this.check(ticketText, nowSeconds).catch(this.retry);
    if (owner !== 'self' && this.foreign) {
      throw new RpcError(RpcErrorCode.unknownTicketKey, 'unknown ticket key');
    }
    return this.grantFor(await this.spendNow(request), request.at);
  }

  /**
   * The same, with the spend group-committed with other redemptions of the same moment (one
   * fsync for all of them); the grant still comes only after the commit.
   */
  async redeemBatched(ticketText: unknown, nowSeconds: number, topUp?: string): Promise<Grant> {
    const screened = await this.screen(ticketText, nowSeconds).catch(this.retry);
    await this.verifyOffThread(screened);
    const { request, owner } = screened;
    // Without a gate the keyring alone decides which keys count (as in the tests' keyrings).
    const gate = owner === 'self' ? undefined : this.foreign;
    let admission: { offline: boolean } | undefined;
    try {
      admission = gate ? await gate.admit(owner, request) : undefined;
    } catch (err) {
      if (err instanceof RpcError && err.code === RpcErrorCode.ticketSpent) this.tally.spent++;
      throw this.asRetry(err);
    }
    let spend: SpendResult;
    try {
      spend = await this.batcher.spend(request);
    } catch (err) {
      throw this.asRetry(err);
    }
    if (spend.spent && gate && admission) await gate.served(owner, request, spend.seq, admission);
    return this.grantFor(spend, request.at, topUp);
  }

  /**
   * Spend one of our own tickets without granting anything: a peer pays its debt with
   * tickets it earned by mining for us (Protocol 2 settlement by work). Same checks and the
   * same durable spend as a redemption; false if the ticket is not good or already spent.
   */
  async spendForSettlement(
    ticketText: string,
    nowSeconds: number,
    origin: string,
  ): Promise<boolean> {
    try {
      const { request, owner } = await this.check(ticketText, nowSeconds);
      if (owner !== 'self') return false;
      return (await this.store.trySpend({ ...request, origin })).spent;
    } catch (err) {
      if (err instanceof RpcError) return false;
      throw err;
    }
  }

  /** Everything but the spend, on the calling thread. Rejects with RpcError 30/31/32/35. */
  private async check(
    ticketText: unknown,
    nowSeconds: number,
  ): Promise<{ request: SpendRequest; owner: string }> {
    const screened = await this.screen(ticketText, nowSeconds);
    if (!this.signatures.check(screened.key, screened.ticket)) this.refuseSignature();
    return screened;
  }

  /**
   * The cheap checks, in order: format (30), key known (35), day (31), scheme of the key (30),
   * serial not already spent here (32). The read of the spent store only saves work: the
   * durable check-and-insert after the signature stays the authority.
   */
  private async screen(ticketText: unknown, nowSeconds: number): Promise<Screened> {
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
    const key = keyFor(ticket, accepted);
    if (key === null) this.refuseSignature();
    const serial =
      ticket.version === TICKET_VERSION ? ticketMessage(ticket.v1.xc) : ticketV2Serial(ticket.v2);
    if (await this.store.isSpent(serial)) this.refuseSpent();
    return {
      ticket,
      key,
      request: { serial, keyId: accepted.key.keyId, day: ticket.day, at: now },
      owner: accepted.owner,
    };
  }

  /** The signature check: a unit of the budget, then the verifier. Throws RpcError 30/38. */
  private async verifyOffThread(screened: Screened): Promise<void> {
    const answer = this.budget.take();
    if (!answer.granted) this.refuseOverloaded(answer.retryAfterSeconds);
    let good: boolean;
    try {
      good = await this.verifier.verify(screened.key, screened.ticket);
    } catch (err) {
      if (err instanceof TicketVerifierBusy) this.refuseOverloaded(1);
      throw err;
    }
    if (!good) this.refuseSignature();
  }

  private refuseSignature(): never {
    this.tally.badSignature++;
    throw new RpcError(RpcErrorCode.badTicketSignature, 'bad ticket signature');
  }

  private refuseSpent(): never {
    this.tally.spent++;
    throw new RpcError(RpcErrorCode.ticketSpent, 'ticket already spent');
  }

  /**
   * A store that cannot take the request now, as the answer a client retries (busyAsRetry);
   * a 38 counts among the shed redemptions.
   */
  private asRetry(err: unknown): unknown {
    const answer = busyAsRetry(err);
    if (answer instanceof RpcError && answer.code === RpcErrorCode.relayOverloaded) this.shed++;
    return answer;
  }

  /** The same, thrown: for `.catch`. */
  private readonly retry = (err: unknown): never => {
    throw this.asRetry(err);
  };

  /** Nothing was checked or recorded: the ticket is as good as before, so the client retries. */
  private refuseOverloaded(retryAfter: number): never {
    this.shed++;
    throw new RpcError(RpcErrorCode.relayOverloaded, OVERLOADED_MESSAGE, { retryAfter });
  }

  private async spendNow(request: SpendRequest): Promise<SpendResult> {
    try {
      return await this.store.trySpend(request);
    } catch (err) {
      throw this.asRetry(err);
    }
  }

  /**
   * The grant for a committed spend, answered only once it is committed too (group-committed
   * with the other grants of this turn): spend committed → grant committed → answer. Why not
   * one transaction for both, and what a crash in between costs: src/tickets/grant-store.ts.
   */
  private async grantFor(spend: SpendResult, now: number, topUp?: string): Promise<Grant> {
    if (topUp !== undefined && this.grantsShared && this.grants.lookup(topUp, now) === undefined) {
      const id = grantId(topUp);
      // Unreadable (the database is down): the ticket starts a new grant, as for an unknown token.
      const runs = (await this.grantStore?.load(id, now).catch(() => [])) ?? [];
      this.grants.adopt(id, runs, now);
    }
    const grant = this.inBook(spend, now, topUp);
    await this.grantStore?.record(grantId(grant.token), grant.expiresAt);
    return grant;
  }

  /**
   * Only a recorded spend earns a grant. With `topUp`, the token of a live grant, the ticket
   * is added to that grant instead (docs/design.md §6.3: several tickets per window move the
   * circuit to a higher group) and the grant lasts a window from now; the ticket counts for
   * the group during that window (GrantBook).
   */
  private inBook(spend: SpendResult, now: number, topUp?: string): Grant {
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

  /** Drop spent serials of days no ticket can be redeemed on any more; resolves how many. */
  pruneSpent(nowSeconds: number): Promise<number> {
    return this.store.prune(oldestKeptDay(utcDay(nowSeconds)));
  }

  /** How many redemptions succeeded and why the others were refused (for stats). */
  counts(): Readonly<RedeemCounts> {
    return { ...this.tally };
  }

  /** Redemptions answered 38 since start: shed under load, the tickets still good. */
  overloaded(): number {
    return this.shed;
  }

  /** Stop the verifier (the relay's worker pool). */
  close(): Promise<void> {
    return this.verifier.close();
  }
}

/**
 * The store could not take the spend now: a locked SQLite file (nothing was recorded, 33) or
 * an unreachable database (38, as for any load the relay sheds; docs/operating.md). Either
 * way the client may simply retry: the ticket is still good, or, if the lost answer was to a
 * commit that went through, the retry finds it spent.
 */
function busyAsRetry(err: unknown): unknown {
  if (err instanceof SpentStoreBusyError) {
    return new RpcError(RpcErrorCode.issuerBusy, 'relay busy, retry', { retryAfter: 1 });
  }
  if (err instanceof StorageUnavailableError) {
    return new RpcError(RpcErrorCode.relayOverloaded, 'ticket store unavailable, retry', {
      retryAfter: STORAGE_RETRY_SECONDS,
    });
  }
  return err;
}
