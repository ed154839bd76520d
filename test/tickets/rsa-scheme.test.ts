import { createPublicKey, randomBytes, randomInt, webcrypto } from 'node:crypto';
import { RSAPBSSA } from '@cloudflare/blindrsa-ts';
import { beforeAll, describe, expect, it } from 'vitest';
import { TicketFormatError } from '../../src/tickets/group.js';
import {
  bigIntToBytes,
  blind,
  bytesToBigInt,
  deriveKeyPair,
  derivedPublicKey,
  derivePublicExponent,
  finalize,
  MODULUS_BYTES,
  modInverse,
  rsaPrivateKey,
  rsaPublicKey,
  RsaSigner,
  RsaVerifier,
  signBlinded,
  SigningFailure,
  ticketInfoV2,
  verify,
  verifyWithKey,
  type RsaPrivateKey,
} from '../../src/tickets/rsa-scheme.js';
import { ticketMessageV2 } from '../../src/tickets/ticket-v2.js';
import { vectorRsaKeys } from '../helpers/ticket-v2.js';
import { readVectorsFile, withFixedRandom } from './rsa-vector-build.js';

const published = readVectorsFile();
const h = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const big = (s: string) => BigInt(`0x${s}`);
const { draft: draftKey, ours: ourKey } = vectorRsaKeys();
const librarySuite = RSAPBSSA.SHA384.PSS.Deterministic();
const b64u = (x: bigint) => Buffer.from(bigIntToBytes(x, MODULUS_BYTES)).toString('base64url');

/** The master key as the reference library wants it (its pure-JS BlindSign is the baseline). */
function libraryPrivateKey(key: RsaPrivateKey): Promise<webcrypto.CryptoKey> {
  const { n, e, p, q } = key;
  const d = modInverse(e, (p - 1n) * (q - 1n));
  const half = (x: bigint) =>
    Buffer.from(bigIntToBytes(x, MODULUS_BYTES / 2)).toString('base64url');
  const jwk = {
    kty: 'RSA',
    n: b64u(n),
    e: Buffer.from([1, 0, 1]).toString('base64url'),
    d: b64u(d),
    p: half(p),
    q: half(q),
    dp: half(d % (p - 1n)),
    dq: half(d % (q - 1n)),
    qi: half(modInverse(q, p)),
  };
  return webcrypto.subtle.importKey('jwk', jwk, { name: 'RSA-PSS', hash: 'SHA-384' }, true, [
    'sign',
  ]);
}

describe('draft-amjad-cfrg-partially-blind-rsa-02 test vectors', () => {
  it('the draft key loads: safe primes, n = p·q, e = 65537, the published d', () => {
    expect(hex(bigIntToBytes(draftKey.n, MODULUS_BYTES))).toBe(published.draft.key.n);
    const d = modInverse(draftKey.e, (draftKey.p - 1n) * (draftKey.q - 1n));
    expect(d).toBe(big(published.draft.key.d));
  });

  published.draft.vectors.forEach((v, i) => {
    it(`vector ${i}: every step, library and relay signer alike`, async () => {
      const info = h(v.info);
      const msg = h(v.msg);
      const derived = deriveKeyPair(draftKey, info);
      expect(hex(bigIntToBytes(derived.ePrime, MODULUS_BYTES / 2))).toBe(v.eprime);
      expect(derivePublicExponent(draftKey.n, info)).toBe(derived.ePrime);
      expect((derived.ePrime * derived.dPrime) % ((draftKey.p - 1n) * (draftKey.q - 1n))).toBe(1n);

      const { blindedMsg, inv } = await withFixedRandom([h(v.salt), h(v.r)], () =>
        blind(draftKey.spki, info, msg),
      );
      expect(hex(blindedMsg)).toBe(v.blinded_msg);
      expect(bytesToBigInt(inv)).toBe(modInverse(big(v.r), draftKey.n));

      const relaySig = signBlinded(draftKey.n, derived, blindedMsg);
      expect(hex(relaySig)).toBe(v.blinded_sig);
      const librarySig = await librarySuite.blindSign(
        await libraryPrivateKey(draftKey),
        blindedMsg,
        info,
      );
      expect(hex(librarySig)).toBe(v.blinded_sig);

      const signature = await finalize(draftKey.spki, info, msg, relaySig, inv);
      expect(hex(signature)).toBe(v.sig);
      expect(await verify(draftKey.spki, info, msg, signature)).toBe(true);
      expect(verifyWithKey(derivedPublicKey(draftKey.n, info), info, msg, signature)).toBe(true);
    }, 30_000);
  });
});

describe('relay signer (node:crypto) against the reference library, random inputs', () => {
  it('derived key, blind signature and final signature agree, and both verifiers accept', async () => {
    const signer = new RsaSigner(ourKey);
    const verifier = new RsaVerifier(rsaPublicKey(ourKey.spki));
    const libraryKey = await libraryPrivateKey(ourKey);
    for (let round = 0; round < 2; round++) {
      const day = randomInt(0, 2 ** 31);
      const info = ticketInfoV2(day);
      const msg = ticketMessageV2(ourKey.keyId, day, randomBytes(32));
      const { blindedMsg, inv } = await blind(ourKey.spki, info, msg);
      const relaySig = signer.sign(day, blindedMsg);
      // RSA signing is deterministic: the library must produce the very same bytes.
      expect(hex(await librarySuite.blindSign(libraryKey, blindedMsg, info))).toBe(hex(relaySig));
      const signature = await finalize(ourKey.spki, info, msg, relaySig, inv);
      expect(verifier.verify(day, msg, signature)).toBe(true);
      expect(await verify(ourKey.spki, info, msg, signature)).toBe(true);
    }
  }, 30_000);
});

describe('what must fail', () => {
  const day = 20_500;
  const info = ticketInfoV2(day);
  const msg = ticketMessageV2(ourKey.keyId, day, new Uint8Array(32).fill(7));
  const signer = new RsaSigner(ourKey);
  const verifier = new RsaVerifier(rsaPublicKey(ourKey.spki));
  // Issued in beforeAll, not at collection: the draft tests swap the CSPRNG while they run.
  let issued: { blindSig: Uint8Array; inv: Uint8Array; signature: Uint8Array };
  beforeAll(async () => {
    const { blindedMsg, inv } = await blind(ourKey.spki, info, msg);
    const blindSig = signer.sign(day, blindedMsg);
    issued = { blindSig, inv, signature: await finalize(ourKey.spki, info, msg, blindSig, inv) };
  });

  it('a genuine ticket signature verifies (the control)', () => {
    const { signature } = issued;
    expect(verifier.verify(day, msg, signature)).toBe(true);
  });

  it('a tampered signature, the wrong day or the wrong message fails both verifiers', async () => {
    const { signature } = issued;
    const tampered = signature.slice();
    tampered[100] = (tampered[100] ?? 0) ^ 0x01;
    const otherMsg = ticketMessageV2(ourKey.keyId, day, new Uint8Array(32).fill(8));
    expect(verifier.verify(day, msg, tampered)).toBe(false);
    expect(verifier.verify(day + 1, msg, signature)).toBe(false);
    expect(verifier.verify(day, otherMsg, signature)).toBe(false);
    expect(verifier.verify(day, msg, signature.subarray(1))).toBe(false);
    expect(await verify(ourKey.spki, info, msg, tampered)).toBe(false);
    expect(await verify(ourKey.spki, ticketInfoV2(day + 1), msg, signature)).toBe(false);
    expect(await verify(ourKey.spki, info, otherMsg, signature)).toBe(false);
  });

  it('finalize refuses a blind signature that does not verify, or of the wrong length', async () => {
    const { blindSig, inv } = issued;
    const tampered = blindSig.slice();
    tampered[0] = (tampered[0] ?? 0) ^ 0x01;
    await expect(finalize(ourKey.spki, info, msg, tampered, inv)).rejects.toThrow();
    await expect(
      finalize(ourKey.spki, ticketInfoV2(day + 1), msg, blindSig, inv),
    ).rejects.toThrow();
    await expect(finalize(ourKey.spki, info, msg, blindSig.subarray(1), inv)).rejects.toThrow(
      TicketFormatError,
    );
  });

  it('the signer refuses a blinded message ≥ n or of the wrong length', () => {
    const n = bigIntToBytes(ourKey.n, MODULUS_BYTES);
    expect(() => signer.sign(day, n)).toThrow(/out of range/);
    expect(() => signer.sign(day, new Uint8Array(MODULUS_BYTES).fill(0xff))).toThrow(
      /out of range/,
    );
    expect(() => signer.sign(day, new Uint8Array(MODULUS_BYTES - 1))).toThrow(TicketFormatError);
    expect(() => signer.sign(day, new Uint8Array(MODULUS_BYTES + 1))).toThrow(TicketFormatError);
    expect(signer.sign(day, bigIntToBytes(ourKey.n - 1n, MODULUS_BYTES))).toHaveLength(256);
  });

  it('a private operation that does not check out under the public key is never returned', () => {
    // A derived key whose halves disagree stands in for a faulty CRT computation.
    const today = deriveKeyPair(ourKey, info);
    const other = deriveKeyPair(ourKey, ticketInfoV2(day + 1));
    const blindedMsg = bigIntToBytes(12345n, MODULUS_BYTES);
    expect(signBlinded(ourKey.n, today, blindedMsg)).toHaveLength(MODULUS_BYTES);
    expect(() =>
      signBlinded(ourKey.n, { ...today, publicKey: other.publicKey }, blindedMsg),
    ).toThrow(SigningFailure);
  });

  it('days outside uint32 are refused', () => {
    expect(() => ticketInfoV2(-1)).toThrow(TicketFormatError);
    expect(() => ticketInfoV2(2 ** 32)).toThrow(TicketFormatError);
    expect(() => ticketInfoV2(1.5)).toThrow(TicketFormatError);
    expect(hex(ticketInfoV2(0x01020304))).toBe(
      `${Buffer.from('powbridge/ticket/v2').toString('hex')}01020304`,
    );
  });

  it('public keys: only canonical SPKI of a 2048-bit modulus with e = 65537', () => {
    const spkiOf = (n: bigint, e: bigint) =>
      new Uint8Array(
        createPublicKey({
          key: {
            kty: 'RSA',
            n: Buffer.from(bigIntToBytes(n, Math.ceil(n.toString(16).length / 2))).toString(
              'base64url',
            ),
            e: Buffer.from(bigIntToBytes(e, Math.ceil(e.toString(16).length / 2))).toString(
              'base64url',
            ),
          },
          format: 'jwk',
        }).export({ type: 'spki', format: 'der' }),
      );
    expect(hex(rsaPublicKey(spkiOf(ourKey.n, 65537n)).keyId)).toBe(published.powbridge.key.keyId);
    expect(() => rsaPublicKey(spkiOf(ourKey.n, 3n))).toThrow(/65537/);
    expect(() => rsaPublicKey(spkiOf(ourKey.p * 3n, 65537n))).toThrow(/2048/);
    expect(() => rsaPublicKey(spkiOf(ourKey.n * 3n, 65537n))).toThrow(/2048/);
    expect(() => rsaPublicKey(new Uint8Array([...ourKey.spki, 0]))).toThrow(TicketFormatError);
    expect(() => rsaPublicKey(randomBytes(294))).toThrow(TicketFormatError);
  });

  it('private keys: safe primes only, distinct, a 2048-bit modulus', () => {
    const { p, q } = ourKey;
    expect(() => rsaPrivateKey(p, p)).toThrow(/differ/);
    expect(() => rsaPrivateKey(p, q + 2n)).toThrow(/safe primes/);
    expect(() => rsaPrivateKey(p, q >> 1n)).toThrow(/2048/);
  });
});
