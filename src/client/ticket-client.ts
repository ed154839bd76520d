import {
  AO_SCHEME,
  type AoTicketTerms,
  RSA_SCHEME,
  type RsaTicketTerms,
} from '../protocol/messages.js';
import {
  csprng,
  decodePoint,
  decodeScalar,
  encodeScalar,
  type RandomBytes,
} from '../tickets/group.js';
import { utcDay } from '../tickets/keyring.js';
import { blindMessage, finalizeSignature } from '../tickets/rsa-blind.js';
import { type RsaPublicKey, rsaPublicKey, ticketInfoV2 } from '../tickets/rsa-scheme.js';
import {
  clientChallenge,
  clientUnblind,
  InfoPointCache,
  SignatureError,
  ticketMessage,
  type VerifierKey,
  verifierKey,
  verifySignature,
} from '../tickets/scheme.js';
import { encodeTicket } from '../tickets/ticket.js';
import { encodeTicketV2, NONCE_BYTES, ticketMessageV2 } from '../tickets/ticket-v2.js';
import type { CircuitClient } from './circuit-client.js';

/**
 * The client's half of issuance over a circuit, for either scheme of the registration terms:
 * Abe–Okamoto (docs/design.md §6.1, steps 2 and 4: ticket.open, ticket.finish) or partially
 * blind RSA (§6.5: blind, one ticket.issue, finalize). Besides the signature checks, it guards
 * unlinkability: the common information (key, day) is visible to the relay, so a relay handing
 * one user a special key or an odd day could recognise that user's tickets later. Only the
 * pinned key is accepted, and only today's day (± a few minutes around UTC midnight, for clock
 * skew).
 */

export interface IssuedTicket {
  /** base64url, what ticket.redeem takes. */
  ticket: string;
  keyId: string;
  day: number;
}

/** What the client needs of the terms: the key, and for RSA the day (it names the day itself). */
export type TicketClientTerms =
  | (Pick<AoTicketTerms, 'keyId' | 'publicKey'> & { scheme?: typeof AO_SCHEME })
  | Pick<RsaTicketTerms, 'scheme' | 'keyId' | 'publicKey' | 'day'>;

export interface TicketClientOptions {
  random?: RandomBytes;
  /** Unix seconds. */
  now?: () => number;
  /** Seconds around UTC midnight in which yesterday's or tomorrow's day is tolerated. */
  midnightSkewSeconds?: number;
}

type PinnedKey =
  | { scheme: typeof AO_SCHEME; key: VerifierKey }
  | { scheme: typeof RSA_SCHEME; key: RsaPublicKey; termsDay: number };

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

export class TicketClient {
  private readonly pinned: PinnedKey;
  private readonly keyIdHex: string;
  private readonly points = new InfoPointCache(4);
  private readonly random: RandomBytes;
  private readonly now: () => number;
  private readonly skew: number;

  /** `terms` must come from the relay's pinned descriptor, not just from mining.register. */
  constructor(terms: TicketClientTerms, options: TicketClientOptions = {}) {
    const publicKey = new Uint8Array(Buffer.from(terms.publicKey, 'hex'));
    this.pinned =
      terms.scheme === RSA_SCHEME
        ? { scheme: RSA_SCHEME, key: rsaPublicKey(publicKey), termsDay: terms.day }
        : { scheme: AO_SCHEME, key: verifierKey(publicKey) };
    this.keyIdHex = hex(this.pinned.key.keyId);
    if (this.keyIdHex !== terms.keyId) {
      throw new SignatureError('ticket terms: key id does not match the public key');
    }
    this.random = options.random ?? csprng;
    this.now = options.now ?? (() => Date.now() / 1000);
    this.skew = options.midnightSkewSeconds ?? 300;
  }

  /**
   * Obtain a verified ticket. `onOpened` runs once the relay has taken the price: when it
   * opened the session (Abe–Okamoto), or answered ticket.issue (RSA: it deducts as it signs).
   */
  obtain(circuit: CircuitClient, onOpened?: () => void): Promise<IssuedTicket> {
    const { pinned } = this;
    return pinned.scheme === RSA_SCHEME
      ? this.obtainRsa(circuit, pinned.key, pinned.termsDay, onOpened)
      : this.obtainAo(circuit, pinned.key, onOpened);
  }

  /** ticket.open / ticket.finish (docs/design.md §6.1). */
  private async obtainAo(
    circuit: CircuitClient,
    key: VerifierKey,
    onOpened?: () => void,
  ): Promise<IssuedTicket> {
    const opened = await circuit.request('ticket.open', {});
    onOpened?.();
    if (opened.keyId !== this.keyIdHex) {
      throw new SignatureError('relay signed with a key other than the pinned one');
    }
    this.checkDay(opened.day);
    const { info, z } = this.points.get(key.keyId, opened.day);
    const commitment = {
      a: decodePoint(Buffer.from(opened.a, 'hex'), 'a'),
      b: decodePoint(Buffer.from(opened.b, 'hex'), 'b'),
    };
    const xc = this.random(32);
    const msg = ticketMessage(xc);
    const { e, blinding } = clientChallenge(key, z, info, commitment, msg, this.random);
    const answer = await circuit.request('ticket.finish', {
      session: opened.session,
      e: hex(encodeScalar(e)),
    });
    const scalar = (text: string, name: string) => decodeScalar(Buffer.from(text, 'hex'), name);
    const signature = clientUnblind(
      key,
      z,
      commitment,
      {
        r: scalar(answer.r, 'r'),
        c: scalar(answer.c, 'c'),
        s: scalar(answer.s, 's'),
        d: scalar(answer.d, 'd'),
      },
      blinding,
    );
    if (!verifySignature(key, z, info, msg, signature)) {
      throw new SignatureError('issued ticket does not verify');
    }
    return {
      ticket: encodeTicket({ keyId: key.keyId, day: opened.day, xc, signature }),
      keyId: this.keyIdHex,
      day: opened.day,
    };
  }

  /**
   * One ticket.issue (docs/design.md §6.5): the client names key and day, so both are checked
   * before anything is sent. The blinded message hides the nonce (the serial); the relay sees
   * only the key and the day, which every ticket of that day shares.
   */
  private async obtainRsa(
    circuit: CircuitClient,
    key: RsaPublicKey,
    termsDay: number,
    onOpened?: () => void,
  ): Promise<IssuedTicket> {
    const day = this.rsaDay(termsDay);
    const nonce = this.random(NONCE_BYTES);
    const msg = ticketMessageV2(key.keyId, day, nonce);
    const info = ticketInfoV2(day);
    const { blindedMsg, inv } = blindMessage(key, info, msg, this.random);
    const { blindSig } = await circuit.request('ticket.issue', {
      keyId: this.keyIdHex,
      day,
      blindedMsg: hex(blindedMsg),
    });
    onOpened?.();
    // Throws SignatureError unless the unblinded signature verifies: nothing else is kept.
    const signature = finalizeSignature(
      key,
      info,
      msg,
      new Uint8Array(Buffer.from(blindSig, 'hex')),
      inv,
    );
    return {
      ticket: encodeTicketV2({ keyId: key.keyId, day, nonce, signature }),
      keyId: this.keyIdHex,
      day,
    };
  }

  /**
   * The day to ask for: the terms' day while it is still today (± the skew). A circuit outlives
   * the day it registered on, and registering again would forfeit its credit, so once the terms'
   * day is past the client asks for its own today, which is as public (the relay refuses it if
   * its clock disagrees). A terms' day ahead of today is refused: that is not the public day.
   */
  private rsaDay(termsDay: number): number {
    const now = this.now();
    if (this.allowedDays(now).has(termsDay)) return termsDay;
    const today = utcDay(now);
    if (termsDay < today) return today;
    throw new SignatureError(`relay offered day ${termsDay}, not today (${today})`);
  }

  private checkDay(day: number): void {
    const now = this.now();
    if (!this.allowedDays(now).has(day)) {
      throw new SignatureError(`relay offered day ${day}, not today (${utcDay(now)})`);
    }
  }

  private allowedDays(now: number): Set<number> {
    return new Set([utcDay(now), utcDay(now - this.skew), utcDay(now + this.skew)]);
  }
}
