import type { TicketTerms } from '../protocol/messages.js';
import {
  csprng,
  decodePoint,
  decodeScalar,
  encodeScalar,
  type RandomBytes,
} from '../tickets/group.js';
import { utcDay } from '../tickets/keyring.js';
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
import type { CircuitClient } from './circuit-client.js';

/**
 * The client's half of issuance (docs/design.md §6.1, step 2 and 4) over a circuit. Besides the
 * signature checks, it guards unlinkability: the common information (key, day) is visible to
 * the relay, so a relay handing one user a special key or an odd day could recognise that
 * user's tickets later. Only the pinned key is accepted, and only today's day (± one around
 * UTC midnight, for clock skew).
 */

export interface IssuedTicket {
  /** base64url, what ticket.redeem takes. */
  ticket: string;
  keyId: string;
  day: number;
}

export interface TicketClientOptions {
  random?: RandomBytes;
  /** Unix seconds. */
  now?: () => number;
  /** Seconds around UTC midnight in which yesterday's or tomorrow's day is tolerated. */
  midnightSkewSeconds?: number;
}

export class TicketClient {
  private readonly key: VerifierKey;
  private readonly keyIdHex: string;
  private readonly points = new InfoPointCache(4);
  private readonly random: RandomBytes;
  private readonly now: () => number;
  private readonly skew: number;

  /** `terms` must come from the relay's pinned descriptor, not just from mining.register. */
  constructor(terms: Pick<TicketTerms, 'keyId' | 'publicKey'>, options: TicketClientOptions = {}) {
    this.key = verifierKey(new Uint8Array(Buffer.from(terms.publicKey, 'hex')));
    this.keyIdHex = Buffer.from(this.key.keyId).toString('hex');
    if (this.keyIdHex !== terms.keyId) {
      throw new SignatureError('ticket terms: key id does not match the public key');
    }
    this.random = options.random ?? csprng;
    this.now = options.now ?? (() => Date.now() / 1000);
    this.skew = options.midnightSkewSeconds ?? 300;
  }

  /**
   * Run ticket.open / ticket.finish and return a verified ticket. `onOpened` runs once the
   * relay has opened the session (and so deducted the price).
   */
  async obtain(circuit: CircuitClient, onOpened?: () => void): Promise<IssuedTicket> {
    const opened = await circuit.request('ticket.open', {});
    onOpened?.();
    if (opened.keyId !== this.keyIdHex) {
      throw new SignatureError('relay signed with a key other than the pinned one');
    }
    this.checkDay(opened.day);
    const { info, z } = this.points.get(this.key.keyId, opened.day);
    const commitment = {
      a: decodePoint(Buffer.from(opened.a, 'hex'), 'a'),
      b: decodePoint(Buffer.from(opened.b, 'hex'), 'b'),
    };
    const xc = this.random(32);
    const msg = ticketMessage(xc);
    const { e, blinding } = clientChallenge(this.key, z, info, commitment, msg, this.random);
    const answer = await circuit.request('ticket.finish', {
      session: opened.session,
      e: Buffer.from(encodeScalar(e)).toString('hex'),
    });
    const scalar = (hex: string, name: string) => decodeScalar(Buffer.from(hex, 'hex'), name);
    const signature = clientUnblind(
      this.key,
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
    if (!verifySignature(this.key, z, info, msg, signature)) {
      throw new SignatureError('issued ticket does not verify');
    }
    return {
      ticket: encodeTicket({ keyId: this.key.keyId, day: opened.day, xc, signature }),
      keyId: this.keyIdHex,
      day: opened.day,
    };
  }

  private checkDay(day: number): void {
    const now = this.now();
    const allowed = new Set([utcDay(now), utcDay(now - this.skew), utcDay(now + this.skew)]);
    if (!allowed.has(day)) {
      throw new SignatureError(`relay offered day ${day}, not today (${utcDay(now)})`);
    }
  }
}
