import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RandomBytes } from '../../src/tickets/group.js';
import { blindMessage, finalizeSignature } from '../../src/tickets/rsa-blind.js';
import {
  bigIntToBytes,
  blind,
  bytesToBigInt,
  deriveKeyPair,
  finalize,
  modInverse,
  MODULUS_BYTES,
  RsaSigner,
  SALT_BYTES,
  signBlinded,
  ticketInfoV2,
  verify,
} from '../../src/tickets/rsa-scheme.js';
import { SignatureError } from '../../src/tickets/scheme.js';
import { encodeTicketV2, NONCE_BYTES, ticketMessageV2 } from '../../src/tickets/ticket-v2.js';
import { fixedRandom } from '../helpers/fixed-random.js';
import { vectorRsaKeys } from '../helpers/ticket-v2.js';
import { readVectorsFile, withFixedRandom } from './rsa-vector-build.js';

const published = readVectorsFile();
const h = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const big = (s: string) => BigInt(`0x${s}`);
const { draft: draftKey, ours: ourKey } = vectorRsaKeys();
const csprng: RandomBytes = (length) => new Uint8Array(randomBytes(length));

/** Hands out exactly these draws, in order, and checks each requested length. */
function draws(...values: Uint8Array[]): RandomBytes & { left: () => number } {
  const queue = [...values];
  const random = (length: number) => {
    const next = queue.shift();
    if (next === undefined || next.length !== length) {
      throw new Error(`unexpected draw of ${length} bytes`);
    }
    return next;
  };
  return Object.assign(random, { left: () => queue.length });
}

describe('blind and finalize: the draft test vectors, byte for byte', () => {
  published.draft.vectors.forEach((v, i) => {
    it(`vector ${i}`, () => {
      const random = draws(h(v.salt), h(v.r));
      const { blindedMsg, inv } = blindMessage(draftKey, h(v.info), h(v.msg), random);
      expect(random.left()).toBe(0);
      expect(hex(blindedMsg)).toBe(v.blinded_msg);
      expect(bytesToBigInt(inv)).toBe(modInverse(big(v.r), draftKey.n));
      expect(hex(finalizeSignature(draftKey, h(v.info), h(v.msg), h(v.blinded_sig), inv))).toBe(
        v.sig,
      );
    });
  });
});

describe('blind and finalize: our ticket v2 vectors, from the seed', () => {
  it('nonce, blinded message, inverse, signature and ticket reproduce exactly', () => {
    const v = published.powbridge;
    // The vectors' draw order: nonce, salt, then r candidates until one is in [1, n).
    const random = fixedRandom(v.seed);
    const nonce = random(NONCE_BYTES);
    expect(hex(nonce)).toBe(v.nonce);
    const info = ticketInfoV2(v.day);
    const msg = ticketMessageV2(ourKey.keyId, v.day, nonce);
    expect(hex(msg)).toBe(v.msg);
    const { blindedMsg, inv } = blindMessage(ourKey, info, msg, random);
    expect(hex(blindedMsg)).toBe(v.blinded_msg);
    expect(hex(inv)).toBe(v.inv);
    const blindSig = new RsaSigner(ourKey).sign(v.day, blindedMsg);
    expect(hex(blindSig)).toBe(v.blinded_sig);
    const signature = finalizeSignature(ourKey, info, msg, blindSig, inv);
    expect(hex(signature)).toBe(v.sig);
    expect(encodeTicketV2({ keyId: ourKey.keyId, day: v.day, nonce, signature })).toBe(v.ticket);
  });
});

describe('against the reference library (@cloudflare/blindrsa-ts)', () => {
  it('the same draws give the library the same blinded message and inverse', async () => {
    const day = 20_600;
    const info = ticketInfoV2(day);
    const msg = ticketMessageV2(ourKey.keyId, day, randomBytes(32));
    const salt = csprng(SALT_BYTES);
    const r = bigIntToBytes(bytesToBigInt(csprng(MODULUS_BYTES)) % ourKey.n, MODULUS_BYTES);
    const ours = blindMessage(ourKey, info, msg, draws(salt, r));
    const library = await withFixedRandom([salt, r], () => blind(ourKey.spki, info, msg));
    expect(hex(ours.blindedMsg)).toBe(hex(library.blindedMsg));
    expect(hex(ours.inv)).toBe(hex(library.inv));
  });

  it('our blinded message, signed by the relay signer, finalises alike in both and verifies', async () => {
    const signer = new RsaSigner(ourKey);
    const day = 20_601;
    const info = ticketInfoV2(day);
    const msg = ticketMessageV2(ourKey.keyId, day, randomBytes(32));
    const { blindedMsg, inv } = blindMessage(ourKey, info, msg, csprng);
    const blindSig = signer.sign(day, blindedMsg);
    const ours = finalizeSignature(ourKey, info, msg, blindSig, inv);
    const library = await finalize(ourKey.spki, info, msg, blindSig, inv);
    expect(hex(ours)).toBe(hex(library));
    expect(await verify(ourKey.spki, info, msg, ours)).toBe(true);
  });

  it('property: any message and info blinded by us, signed and finalised, verify in the library', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 200 }),
        fc.uint8Array({ maxLength: 64 }),
        async (msg, info) => {
          const { blindedMsg, inv } = blindMessage(ourKey, info, msg, csprng);
          const blindSig = signBlinded(ourKey.n, deriveKeyPair(ourKey, info), blindedMsg);
          const signature = await finalize(ourKey.spki, info, msg, blindSig, inv);
          expect(hex(finalizeSignature(ourKey, info, msg, blindSig, inv))).toBe(hex(signature));
          expect(await verify(ourKey.spki, info, msg, signature)).toBe(true);
        },
      ),
      { numRuns: 5 },
    );
  }, 60_000);

  it('timing of both, logged for the record (not asserted); both finalize alike', async () => {
    const day = 20_602;
    const info = ticketInfoV2(day);
    const msg = ticketMessageV2(ourKey.keyId, day, randomBytes(32));
    const signer = new RsaSigner(ourKey);
    const time = async (op: () => unknown, rounds: number) => {
      const start = performance.now();
      for (let i = 0; i < rounds; i++) await op();
      return (performance.now() - start) / rounds;
    };
    const ours = blindMessage(ourKey, info, msg, csprng);
    const blindSig = signer.sign(day, ours.blindedMsg);
    const signatures = new Set<string>();
    const oursBlind = await time(() => blindMessage(ourKey, info, msg, csprng), 10);
    const oursFinalize = await time(
      () => signatures.add(hex(finalizeSignature(ourKey, info, msg, blindSig, ours.inv))),
      10,
    );
    const libraryBlind = await time(() => blind(ourKey.spki, info, msg), 2);
    const libraryFinalize = await time(
      async () => signatures.add(hex(await finalize(ourKey.spki, info, msg, blindSig, ours.inv))),
      2,
    );
    console.info(
      `rsa blind: ours ${oursBlind.toFixed(1)} ms, library ${libraryBlind.toFixed(1)} ms; ` +
        `finalize: ours ${oursFinalize.toFixed(1)} ms, library ${libraryFinalize.toFixed(1)} ms`,
    );
    // Every finalize, ours and the library's, gave the one signature.
    expect(signatures.size).toBe(1);
  }, 30_000);
});

describe('what blind and finalize refuse', () => {
  const day = 20_603;
  const info = ticketInfoV2(day);
  const msg = ticketMessageV2(ourKey.keyId, day, new Uint8Array(32).fill(9));
  const signer = new RsaSigner(ourKey);

  it('r is redrawn when 0, ≥ n or not coprime to n; the blind is that of the first good draw', () => {
    const salt = new Uint8Array(SALT_BYTES).fill(3);
    const good = bigIntToBytes(123_456_789n, MODULUS_BYTES);
    const expected = blindMessage(ourKey, info, msg, draws(salt, good));
    const random = draws(
      salt,
      new Uint8Array(MODULUS_BYTES),
      bigIntToBytes(ourKey.n, MODULUS_BYTES),
      new Uint8Array(MODULUS_BYTES).fill(0xff),
      bigIntToBytes(ourKey.p, MODULUS_BYTES),
      good,
    );
    const got = blindMessage(ourKey, info, msg, random);
    expect(random.left()).toBe(0);
    expect(hex(got.blindedMsg)).toBe(hex(expected.blindedMsg));
    expect(hex(got.inv)).toBe(hex(expected.inv));
  });

  it('a random source that never yields r in range is an error, not a loop', () => {
    const broken: RandomBytes = (length) => new Uint8Array(length).fill(0xff);
    expect(() => blindMessage(ourKey, info, msg, broken)).toThrow(/no blinding factor/);
  });

  it('finalize throws SignatureError on a tampered or foreign blind signature, never returns it', () => {
    const { blindedMsg, inv } = blindMessage(ourKey, info, msg, csprng);
    const blindSig = signer.sign(day, blindedMsg);
    expect(finalizeSignature(ourKey, info, msg, blindSig, inv)).toHaveLength(MODULUS_BYTES);
    const tampered = blindSig.slice();
    tampered[10] = (tampered[10] ?? 0) ^ 0x04;
    const otherDay = signer.sign(day + 1, blindedMsg);
    const cases: [Uint8Array, Uint8Array, Uint8Array, RegExp][] = [
      [info, tampered, inv, /does not verify/],
      [info, otherDay, inv, /does not verify/],
      [ticketInfoV2(day + 1), blindSig, inv, /does not verify/],
      [info, blindSig, bigIntToBytes(1n, MODULUS_BYTES), /does not verify/],
      [info, blindSig.subarray(1), inv, /256 bytes/],
      [info, blindSig, inv.subarray(1), /256 bytes/],
      [info, bigIntToBytes(ourKey.n, MODULUS_BYTES), inv, /out of range/],
      [info, blindSig, new Uint8Array(MODULUS_BYTES), /out of range/],
    ];
    for (const [i, sig, r, message] of cases) {
      expect(() => finalizeSignature(ourKey, i, msg, sig, r)).toThrow(SignatureError);
      expect(() => finalizeSignature(ourKey, i, msg, sig, r)).toThrow(message);
    }
  });
});
