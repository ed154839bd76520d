import { beforeAll, describe, expect, it } from 'vitest';
import {
  decodePoint,
  decodeScalar,
  encodePoint,
  encodeScalar,
  G,
  mod,
  Q,
  TicketFormatError,
  csprng,
} from '../../src/tickets/group.js';
import {
  challengeHash,
  clientChallenge,
  clientUnblind,
  DST_F,
  DST_H,
  generateSignerKey,
  InfoPointCache,
  infoPoint,
  keyIdOf,
  SignatureError,
  signerCommit,
  signerRespond,
  ticketInfo,
  ticketMessage,
  verifierKey,
  verifySignature,
} from '../../src/tickets/scheme.js';
import { decodeTicket, encodeTicket } from '../../src/tickets/ticket.js';
import { expandMessageXmd, leToBigInt, loadSodium, scalarLE } from '../helpers/sodium-ristretto.js';

const DAY = 20_413; // 2025-11-21

/** One complete issuance; returns everything both sides saw. */
function issue(key = generateSignerKey(csprng), day = DAY, random = csprng) {
  const verifier = verifierKey(encodePoint(key.y));
  const { info, z } = new InfoPointCache().get(key.keyId, day);
  const { session, commitment } = signerCommit(z, random);
  const xc = random(32);
  const msg = ticketMessage(xc);
  const { e, blinding } = clientChallenge(verifier, z, info, commitment, msg, random);
  const response = signerRespond(key, session, e);
  const signature = clientUnblind(verifier, z, commitment, response, blinding);
  return { key, verifier, info, z, session, commitment, xc, msg, e, blinding, response, signature };
}

describe('Abe–Okamoto over ristretto255', () => {
  it('an issued ticket verifies; its encoding round-trips through 173 bytes', () => {
    const t = issue();
    expect(verifySignature(t.verifier, t.z, t.info, t.msg, t.signature)).toBe(true);
    const text = encodeTicket({ keyId: t.key.keyId, day: DAY, xc: t.xc, signature: t.signature });
    expect(Buffer.from(text, 'base64url')).toHaveLength(173);
    expect(text).not.toMatch(/[=+/]/);
    const back = decodeTicket(text);
    expect(back.signature).toEqual(t.signature);
    expect(back.day).toBe(DAY);
    expect(Buffer.from(back.keyId)).toEqual(Buffer.from(t.key.keyId));
  });

  it('rejects any change of signature, message, day or key', () => {
    const t = issue();
    const ok = (sig = t.signature, msg = t.msg, info = t.info, z = t.z, v = t.verifier) =>
      verifySignature(v, z, info, msg, sig);
    for (const field of ['rho', 'omega', 'sigma', 'delta'] as const) {
      expect(ok({ ...t.signature, [field]: mod(t.signature[field] + 1n) })).toBe(false);
    }
    expect(ok(t.signature, ticketMessage(csprng(32)))).toBe(false);
    const nextDay = new InfoPointCache().get(t.key.keyId, DAY + 1);
    expect(ok(t.signature, t.msg, nextDay.info, nextDay.z)).toBe(false);
    const other = verifierKey(encodePoint(generateSignerKey(csprng).y));
    expect(ok(t.signature, t.msg, t.info, t.z, other)).toBe(false);
  });

  it('the client refuses a signer answer that does not match its commitment', () => {
    const t = issue();
    const bad = { ...t.response, r: mod(t.response.r + 1n) };
    expect(() => clientUnblind(t.verifier, t.z, t.commitment, bad, t.blinding)).toThrow(
      SignatureError,
    );
    // A consistent answer to a different challenge is caught too.
    const other = signerRespond(t.key, t.session, mod(t.e + 5n));
    expect(() => clientUnblind(t.verifier, t.z, t.commitment, other, t.blinding)).toThrow(
      /does not answer our challenge/,
    );
  });

  it('perfect blindness: each final ticket is consistent with each signer transcript', () => {
    const key = generateSignerKey(csprng);
    const sessions = [issue(key), issue(key)];
    for (const ticket of sessions) {
      for (const view of sessions) {
        // Blinding factors that would turn view's transcript into ticket's signature.
        const t1 = mod(ticket.signature.rho - view.response.r);
        const t2 = mod(ticket.signature.omega - view.response.c);
        const t3 = mod(ticket.signature.sigma - view.response.s);
        const t4 = mod(ticket.signature.delta - view.response.d);
        const alpha = G.multiplyUnsafe(ticket.signature.rho).add(
          ticket.verifier.y.multiplyUnsafe(ticket.signature.omega),
        );
        const beta = G.multiplyUnsafe(ticket.signature.sigma).add(
          ticket.z.multiplyUnsafe(ticket.signature.delta),
        );
        // They exist: α = a·g^t1·y^t2, β = b·g^t3·z^t4, and e = ε − t2 − t4 for that view.
        expect(
          view.commitment.a.add(G.multiplyUnsafe(t1)).add(key.y.multiplyUnsafe(t2)).equals(alpha),
        ).toBe(true);
        expect(
          view.commitment.b.add(G.multiplyUnsafe(t3)).add(ticket.z.multiplyUnsafe(t4)).equals(beta),
        ).toBe(true);
        const epsilon = challengeHash(alpha, beta, ticket.z, key.y, ticket.info, ticket.msg);
        expect(mod(epsilon - t2 - t4)).toBe(view.e);
      }
    }
  });

  it('z is never g^k for a known k: F(info) differs per key and day', () => {
    const key = generateSignerKey(csprng);
    const a = infoPoint(ticketInfo(key.keyId, DAY));
    const b = infoPoint(ticketInfo(key.keyId, DAY + 1));
    expect(a.equals(b)).toBe(false);
    expect(a.equals(G)).toBe(false);
  });
});

describe('checked against libsodium (an independent ristretto255)', () => {
  let sodium: Awaited<ReturnType<typeof loadSodium>>;
  beforeAll(async () => {
    sodium = await loadSodium();
  });

  it('F(info) = ristretto255 one-way map of expand_message_xmd(SHA-512) (RFC 9380 App. B)', () => {
    const info = ticketInfo(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), DAY);
    const theirs = sodium.crypto_core_ristretto255_from_hash(expandMessageXmd(info, DST_F, 64));
    expect(Buffer.from(encodePoint(infoPoint(info)))).toEqual(Buffer.from(theirs));
  });

  it('H = RFC 9497 HashToScalar: expand_message_xmd(SHA-512, 64) read little-endian mod q', () => {
    const t = issue();
    const alpha = G.multiplyUnsafe(t.signature.rho).add(
      t.verifier.y.multiplyUnsafe(t.signature.omega),
    );
    const beta = G.multiplyUnsafe(t.signature.sigma).add(t.z.multiplyUnsafe(t.signature.delta));
    const lp = (b: Uint8Array) => Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
    const input = Buffer.concat(
      [
        encodePoint(alpha),
        encodePoint(beta),
        encodePoint(t.z),
        encodePoint(t.key.y),
        t.info,
        t.msg,
      ].map(lp),
    );
    const theirs = leToBigInt(
      sodium.crypto_core_ristretto255_scalar_reduce(expandMessageXmd(input, DST_H, 64)),
    );
    expect(challengeHash(alpha, beta, t.z, t.key.y, t.info, t.msg)).toBe(theirs);
  });

  it('the verification equation holds when recomputed with libsodium', () => {
    const t = issue();
    const { rho, omega, sigma, delta } = t.signature;
    const y = encodePoint(t.key.y);
    const z = sodium.crypto_core_ristretto255_from_hash(expandMessageXmd(t.info, DST_F, 64));
    const alpha = sodium.crypto_core_ristretto255_add(
      sodium.crypto_scalarmult_ristretto255_base(scalarLE(rho)),
      sodium.crypto_scalarmult_ristretto255(scalarLE(omega), y),
    );
    const beta = sodium.crypto_core_ristretto255_add(
      sodium.crypto_scalarmult_ristretto255_base(scalarLE(sigma)),
      sodium.crypto_scalarmult_ristretto255(scalarLE(delta), z),
    );
    const lp = (b: Uint8Array) => Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
    const input = Buffer.concat([alpha, beta, z, y, t.info, t.msg].map(lp));
    const h = leToBigInt(
      sodium.crypto_core_ristretto255_scalar_reduce(expandMessageXmd(input, DST_H, 64)),
    );
    expect(mod(omega + delta)).toBe(h);
    // And the key id is SHA-256(y)[0..8].
    expect(Buffer.from(keyIdOf(t.key.y))).toEqual(
      Buffer.from(sodium.crypto_hash_sha256(y).slice(0, 8)),
    );
  });
});

describe('strict encodings', () => {
  it('rejects the identity, non-canonical points and wrong lengths', () => {
    expect(() => decodePoint(new Uint8Array(32), 'y')).toThrow(/identity/);
    // 2^255 - 19 + 1 style non-canonical: the field element p is not reduced.
    const p = Buffer.from(
      'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
      'hex',
    );
    expect(() => decodePoint(new Uint8Array(p), 'y')).toThrow(/canonical/);
    // Negative (odd) field elements are invalid ristretto encodings.
    const odd = new Uint8Array(32);
    odd[0] = 1;
    expect(() => decodePoint(odd, 'y')).toThrow(TicketFormatError);
    expect(() => decodePoint(new Uint8Array(31), 'y')).toThrow(/32 bytes/);
    expect(decodePoint(encodePoint(G), 'g').equals(G)).toBe(true);
  });

  it('rejects scalars >= q and wrong lengths', () => {
    expect(decodeScalar(encodeScalar(Q - 1n), 's')).toBe(Q - 1n);
    expect(() => decodeScalar(scalarLE(Q), 's')).toThrow(/not reduced/);
    expect(() => decodeScalar(new Uint8Array(32).fill(0xff), 's')).toThrow(TicketFormatError);
    expect(() => decodeScalar(new Uint8Array(33), 's')).toThrow(/32 bytes/);
  });

  it('decodeTicket rejects wrong length, version, padding, alphabet and unreduced scalars', () => {
    const t = issue();
    const text = encodeTicket({ keyId: t.key.keyId, day: DAY, xc: t.xc, signature: t.signature });
    const bytes = Buffer.from(text, 'base64url');
    const variant = (f: (b: Buffer) => void) => {
      const copy = Buffer.from(bytes);
      f(copy);
      return copy.toString('base64url');
    };
    expect(() => decodeTicket(text.slice(0, -4))).toThrow(/173 bytes/);
    expect(() => decodeTicket(variant((b) => (b[0] = 2)))).toThrow(/version/);
    expect(() => decodeTicket(`${text}=`)).toThrow(/base64url/);
    // Standard base64's '+' and '/' are outside base64url: one put in at a fixed place.
    expect(() => decodeTicket(`+${text.slice(1)}`)).toThrow(TicketFormatError);
    expect(() => decodeTicket(`${text.slice(0, 10)}/${text.slice(11)}`)).toThrow(TicketFormatError);
    expect(() => decodeTicket(variant((b) => b.set(scalarLE(Q), 45)))).toThrow(/rho.*not reduced/);
    expect(() => decodeTicket(variant((b) => b.set(new Uint8Array(32).fill(0xff), 141)))).toThrow(
      /delta/,
    );
    expect(() => decodeTicket(42)).toThrow(/base64url string/);
  });
});
