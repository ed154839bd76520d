import { EventEmitter } from 'node:events';
import { RpcError, RpcErrorCode } from '../protocol/errors.js';
import type { TicketIssueParams, TicketIssueResult } from '../protocol/messages.js';
import { type BlindSigner, BlindSignerBusy } from './blind-signer.js';
import { TicketFormatError } from './group.js';
import type { CreditAccount } from './issuer.js';
import { type Keyring, utcDay } from './keyring.js';
import { bytesToBigInt, MODULUS_BYTES, SigningFailure } from './rsa-scheme.js';

/**
 * `ticket.issue` (docs/design.md §6.5): one request, one blind signature, no session state.
 * Partially blind RSA stays secure with any number of concurrent issuances (one-more-RSA), so
 * there is no cap, no queue of circuits and no TTL: a request waits only for CPU in the signer
 * pool, never for another circuit's round trip.
 *
 * Credit is taken synchronously, before the first await, so concurrent requests on one circuit
 * can never spend the same credit twice; it is given back only when nothing was signed (the
 * signer was full or failed), since the client then holds nothing of value.
 */

export interface RsaIssuerOptions {
  keyring: Pick<Keyring, 'issuingRsaKey'>;
  signer: Pick<BlindSigner, 'sign'>;
  /** Credit one ticket costs. */
  price: number;
  /** Unix seconds. */
  now?: () => number;
  /**
   * Seconds after UTC midnight during which yesterday's day is still signed: a client that
   * registered before midnight asks with the day of its terms.
   */
  midnightSkewSeconds?: number;
}

export interface RsaIssuerEvents {
  /** A signing failure: the check caught a faulty private operation (logged, never sent). */
  failure: [];
  /** A ticket signed; `keyId` is hex (counted in storage: src/storage/issued-counter.ts). */
  issued: [{ day: number; keyId: string }];
}

export class RsaIssuer extends EventEmitter<RsaIssuerEvents> {
  readonly price: number;
  private readonly keyring: Pick<Keyring, 'issuingRsaKey'>;
  private readonly signer: Pick<BlindSigner, 'sign'>;
  private readonly now: () => number;
  private readonly skew: number;
  private issuedCount = 0;

  constructor(options: RsaIssuerOptions) {
    super();
    if (!(options.price > 0)) throw new RangeError('price must be positive');
    if (!options.keyring.issuingRsaKey) {
      throw new TypeError('the RSA issuer needs a keyring with RSA keys');
    }
    this.keyring = options.keyring;
    this.signer = options.signer;
    this.price = options.price;
    this.now = options.now ?? (() => Date.now() / 1000);
    this.skew = options.midnightSkewSeconds ?? 300;
  }

  /** Tickets signed since start, for the status page. */
  issued(): number {
    return this.issuedCount;
  }

  /** Throws RpcError 33 (signer full), 34 (credit), 35 (not the day's key), -32602 (input). */
  async issue(account: CreditAccount, params: TicketIssueParams): Promise<TicketIssueResult> {
    if (account.mode !== 'tickets') {
      throw new RpcError(RpcErrorCode.notEnoughCredit, 'donation-mode circuits earn no tickets');
    }
    const day = this.issuableDay(params.day);
    const issuing = this.keyring.issuingRsaKey?.(day) ?? null;
    if (!issuing)
      throw new RpcError(RpcErrorCode.internalError, `no RSA ticket key for day ${day}`);
    const key = issuing.key;
    if (Buffer.from(key.keyId).toString('hex') !== params.keyId) {
      throw new RpcError(
        RpcErrorCode.unknownTicketKey,
        `key ${params.keyId} does not issue on day ${day}; register again for fresh terms`,
      );
    }
    const blindedMsg = new Uint8Array(Buffer.from(params.blindedMsg, 'hex'));
    if (blindedMsg.length !== MODULUS_BYTES || bytesToBigInt(blindedMsg) >= key.n) {
      throw new RpcError(RpcErrorCode.invalidParams, 'blindedMsg: not below the modulus');
    }
    if (account.credit < this.price) {
      throw new RpcError(RpcErrorCode.notEnoughCredit, 'not enough credit for a ticket', {
        credit: account.credit,
        price: this.price,
      });
    }
    account.credit -= this.price;
    let blindSig: Uint8Array;
    try {
      blindSig = await this.signer.sign(key, day, blindedMsg);
    } catch (err) {
      account.credit += this.price; // nothing was signed: the client holds nothing
      throw this.refusal(err);
    }
    this.issuedCount += 1;
    this.emit('issued', { day, keyId: params.keyId });
    return { blindSig: Buffer.from(blindSig).toString('hex') };
  }

  /** Today, or yesterday for a few minutes after midnight; anything else is refused. */
  private issuableDay(day: number): number {
    const now = this.now();
    const today = utcDay(now);
    if (day === today || day === utcDay(now - this.skew)) return day;
    throw new RpcError(
      RpcErrorCode.invalidParams,
      `day ${day} is not today (${today}); register again for fresh terms`,
    );
  }

  private refusal(err: unknown): unknown {
    if (err instanceof BlindSignerBusy) {
      return new RpcError(RpcErrorCode.issuerBusy, 'ticket signer busy, retry later', {
        retryAfter: 1,
      });
    }
    if (err instanceof TicketFormatError) {
      return new RpcError(RpcErrorCode.invalidParams, err.message);
    }
    if (err instanceof SigningFailure) {
      this.emit('failure');
      return new RpcError(RpcErrorCode.internalError, 'signing failure, retry');
    }
    return err;
  }
}
