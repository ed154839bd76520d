import {
  checkPrimeSync,
  constants,
  createHash,
  createPrivateKey,
  createPublicKey,
  generatePrimeSync,
  hkdfSync,
  privateDecrypt,
  publicEncrypt,
  verify as nodeVerify,
  webcrypto,
  type KeyObject,
} from 'node:crypto';
import { RSAPBSSA } from '@cloudflare/blindrsa-ts';
import { TicketFormatError } from './group.js';

/**
 * Tickets v2 (docs/design.md §6.5): RSAPBSSA-SHA384-PSS-Deterministic, partially blind RSA
 * (draft-amjad-cfrg-partially-blind-rsa-02). The public metadata is `info` =
 * "powbridge/ticket/v2" ‖ day (uint32 BE); the day's key pair is derived from (master key, info).
 *
 * The relay signs with node:crypto (raw RSA with CRT under the day's derived exponent, cached per
 * day, and the result checked with the public operation as the draft requires): the reference
 * library's pure-JS signer is two orders of magnitude slower. The client's blind and finalize
 * are ours too (rsa-blind.ts, for the same reason); the library's, below, is the reference the
 * tests and the vector builder check everything against.
 */

export const MODULUS_BITS = 2048;
export const MODULUS_BYTES = MODULUS_BITS / 8;
export const PUBLIC_EXPONENT = 65537n;
export const SALT_BYTES = 48;
export const KEY_ID_BYTES = 8;
const INFO_PREFIX = new TextEncoder().encode('powbridge/ticket/v2');
const MAX_CACHED_DAYS = 4;

export interface RsaPublicKey {
  n: bigint;
  e: bigint;
  /** SPKI DER of (n, e): what register terms and the descriptor publish. */
  spki: Uint8Array;
  /** First 8 bytes of SHA-256(spki). */
  keyId: Uint8Array;
}

/** A relay's master key. p and q are safe primes, so every derived exponent is invertible. */
export interface RsaPrivateKey extends RsaPublicKey {
  p: bigint;
  q: bigint;
}

/** The day's key pair (the draft's DeriveKeyPair): exponents and node:crypto keys. */
export interface DerivedKey {
  ePrime: bigint;
  dPrime: bigint;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

/** info = "powbridge/ticket/v2" ‖ day (uint32 BE): the day is the common information. */
export function ticketInfoV2(day: number): Uint8Array {
  if (!Number.isInteger(day) || day < 0 || day > 0xffffffff) {
    throw new TicketFormatError('rsa: day must be a uint32');
  }
  const out = new Uint8Array(INFO_PREFIX.length + 4);
  out.set(INFO_PREFIX);
  new DataView(out.buffer).setUint32(INFO_PREFIX.length, day, false);
  return out;
}

// ---- integers and encodings ------------------------------------------------------------------

export function bytesToBigInt(bytes: Uint8Array): bigint {
  return bytes.length === 0 ? 0n : BigInt(`0x${Buffer.from(bytes).toString('hex')}`);
}

export function bigIntToBytes(x: bigint, length: number): Uint8Array {
  if (x < 0n) throw new RangeError('rsa: negative integer');
  const hex = x.toString(16).padStart(length * 2, '0');
  if (hex.length > length * 2) throw new RangeError(`rsa: integer too large for ${length} bytes`);
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

function b64u(x: bigint): string {
  const hex = x.toString(16);
  return Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex').toString('base64url');
}

function bitLength(x: bigint): number {
  return x === 0n ? 0 : x.toString(2).length;
}

function gcd(a: bigint, b: bigint): bigint {
  while (b !== 0n) [a, b] = [b, a % b];
  return a;
}

/** a^-1 mod m by the extended Euclidean algorithm; throws if gcd(a, m) ≠ 1. */
export function modInverse(a: bigint, m: bigint): bigint {
  let [oldR, r] = [((a % m) + m) % m, m];
  let [oldS, s] = [1n, 0n];
  while (r !== 0n) {
    const quotient = oldR / r;
    [oldR, r] = [r, oldR - quotient * r];
    [oldS, s] = [s, oldS - quotient * s];
  }
  if (oldR !== 1n) throw new RangeError('rsa: not invertible');
  return ((oldS % m) + m) % m;
}

// ---- keys ------------------------------------------------------------------------------------

function spkiOf(n: bigint, e: bigint): Uint8Array {
  const key = createPublicKey({ key: { kty: 'RSA', n: b64u(n), e: b64u(e) }, format: 'jwk' });
  return new Uint8Array(key.export({ type: 'spki', format: 'der' }));
}

export function rsaKeyId(spki: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(spki).digest().subarray(0, KEY_ID_BYTES));
}

/** A public key from its SPKI DER: RSA, a 2048-bit modulus, e = 65537, canonical encoding. */
export function rsaPublicKey(spki: Uint8Array): RsaPublicKey {
  let jwk: webcrypto.JsonWebKey;
  try {
    jwk = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' }).export({
      format: 'jwk',
    });
  } catch {
    throw new TicketFormatError('rsa: public key is not an SPKI DER RSA key');
  }
  if (jwk.kty !== 'RSA' || jwk.n === undefined || jwk.e === undefined) {
    throw new TicketFormatError('rsa: public key is not an RSA key');
  }
  const n = bytesToBigInt(Buffer.from(jwk.n, 'base64url'));
  const e = bytesToBigInt(Buffer.from(jwk.e, 'base64url'));
  checkPublic(n, e);
  // Canonical re-encoding: one key has one SPKI, so it has one keyId.
  const canonical = spkiOf(n, e);
  if (!Buffer.from(canonical).equals(Buffer.from(spki))) {
    throw new TicketFormatError('rsa: public key is not canonically encoded');
  }
  return { n, e, spki: canonical, keyId: rsaKeyId(canonical) };
}

function checkPublic(n: bigint, e: bigint): void {
  if (bitLength(n) !== MODULUS_BITS || n % 2n === 0n) {
    throw new TicketFormatError(`rsa: modulus must be ${MODULUS_BITS} bits`);
  }
  if (e !== PUBLIC_EXPONENT) throw new TicketFormatError('rsa: public exponent must be 65537');
}

function isSafePrime(p: bigint): boolean {
  return checkPrimeSync(p) && checkPrimeSync((p - 1n) / 2n);
}

/**
 * A master key from its primes, checked: both safe primes (so every derived exponent, odd and
 * below 2^1022, is invertible mod φ(n)), distinct, a 2048-bit modulus, e = 65537.
 */
export function rsaPrivateKey(p: bigint, q: bigint, e = PUBLIC_EXPONENT): RsaPrivateKey {
  if (p === q) throw new TicketFormatError('rsa: p and q must differ');
  const n = p * q;
  checkPublic(n, e);
  if (!isSafePrime(p) || !isSafePrime(q)) {
    throw new TicketFormatError('rsa: p and q must be safe primes');
  }
  if (gcd(e, (p - 1n) * (q - 1n)) !== 1n) throw new TicketFormatError('rsa: e not invertible');
  const spki = spkiOf(n, e);
  return { n, e, p, q, spki, keyId: rsaKeyId(spki) };
}

/** A fresh master key: two 1024-bit safe primes (seconds of CPU). */
export function generateRsaKey(): RsaPrivateKey {
  for (;;) {
    const p = generatePrimeSync(MODULUS_BITS / 2, { safe: true, bigint: true });
    const q = generatePrimeSync(MODULUS_BITS / 2, { safe: true, bigint: true });
    // Two 1024-bit primes can make a 2047-bit modulus; draw again rather than shorten the key.
    if (p === q || bitLength(p * q) !== MODULUS_BITS) continue;
    return rsaPrivateKey(p, q);
  }
}

/** The draft's DerivePublicKey: e' from HKDF-SHA384("key" ‖ info ‖ 0x00, salt = n, "PBRSA"). */
export function derivePublicExponent(n: bigint, info: Uint8Array): bigint {
  const modulusLength = Math.ceil(bitLength(n) / 8);
  const lambdaLength = modulusLength >> 1;
  const ikm = Buffer.concat([Buffer.from('key'), info, Buffer.from([0])]);
  const expanded = new Uint8Array(
    hkdfSync('sha384', ikm, bigIntToBytes(n, modulusLength), 'PBRSA', lambdaLength + 16),
  );
  expanded[0] = (expanded[0] ?? 0) & 0x3f;
  expanded[lambdaLength - 1] = (expanded[lambdaLength - 1] ?? 0) | 0x01;
  return bytesToBigInt(expanded.subarray(0, lambdaLength));
}

function publicKeyObject(n: bigint, e: bigint): KeyObject {
  return createPublicKey({ key: { kty: 'RSA', n: b64u(n), e: b64u(e) }, format: 'jwk' });
}

/** The draft's DeriveKeyPair: d' = e'^-1 mod φ(n), imported with its CRT parameters. */
export function deriveKeyPair(key: RsaPrivateKey, info: Uint8Array): DerivedKey {
  const { n, p, q } = key;
  const ePrime = derivePublicExponent(n, info);
  const dPrime = modInverse(ePrime, (p - 1n) * (q - 1n));
  const privateKey = createPrivateKey({
    key: {
      kty: 'RSA',
      n: b64u(n),
      e: b64u(ePrime),
      d: b64u(dPrime),
      p: b64u(p),
      q: b64u(q),
      dp: b64u(dPrime % (p - 1n)),
      dq: b64u(dPrime % (q - 1n)),
      qi: b64u(modInverse(q, p)),
    },
    format: 'jwk',
  });
  return { ePrime, dPrime, privateKey, publicKey: publicKeyObject(n, ePrime) };
}

/** A small per-day cache: the day's derivation costs a BigInt inverse and two key imports. */
class DayCache<T> {
  private readonly entries = new Map<number, T>();

  get(day: number, make: () => T): T {
    const hit = this.entries.get(day);
    if (hit !== undefined) return hit;
    const value = make();
    this.entries.set(day, value);
    if (this.entries.size > MAX_CACHED_DAYS) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    return value;
  }
}

function checkBlock(bytes: Uint8Array, what: string): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== MODULUS_BYTES) {
    throw new TicketFormatError(`rsa: ${what} must be ${MODULUS_BYTES} bytes`);
  }
}

export class SigningFailure extends Error {
  override name = 'SigningFailure';
}

/**
 * The draft's BlindSign under a derived key: blind_sig = blinded_msg^d' mod n (node:crypto, CRT),
 * checked: blind_sig^e' mod n must give blinded_msg back, else SigningFailure.
 */
export function signBlinded(n: bigint, derived: DerivedKey, blindedMsg: Uint8Array): Uint8Array {
  checkBlock(blindedMsg, 'blinded message');
  if (bytesToBigInt(blindedMsg) >= n) {
    throw new TicketFormatError('rsa: blinded message out of range');
  }
  const padding = constants.RSA_NO_PADDING;
  const blindSig = new Uint8Array(privateDecrypt({ key: derived.privateKey, padding }, blindedMsg));
  // Steps 4–5 of BlindSign: a faulty private operation must never leave the relay, since a
  // wrong CRT half reveals a factor of n.
  const back = publicEncrypt({ key: derived.publicKey, padding }, blindSig);
  if (blindSig.length !== MODULUS_BYTES || !back.equals(blindedMsg)) {
    throw new SigningFailure('rsa: signing failure');
  }
  return blindSig;
}

/** The relay's signer for one master key: the day's derived key computed once and cached. */
export class RsaSigner {
  private readonly days = new DayCache<DerivedKey>();

  constructor(readonly key: RsaPrivateKey) {}

  derived(day: number): DerivedKey {
    return this.days.get(day, () => deriveKeyPair(this.key, ticketInfoV2(day)));
  }

  sign(day: number, blindedMsg: Uint8Array): Uint8Array {
    checkBlock(blindedMsg, 'blinded message'); // before any derivation work
    return signBlinded(this.key.n, this.derived(day), blindedMsg);
  }
}

/** msg_prime = "msg" ‖ len(info) (uint32 BE) ‖ info ‖ msg, what RSASSA-PSS actually signs. */
export function messagePrime(info: Uint8Array, msg: Uint8Array): Uint8Array {
  const out = new Uint8Array(3 + 4 + info.length + msg.length);
  out.set(new TextEncoder().encode('msg'));
  new DataView(out.buffer).setUint32(3, info.length, false);
  out.set(info, 7);
  out.set(msg, 7 + info.length);
  return out;
}

/** RSASSA-PSS-VERIFY (SHA-384, 48-byte salt) of msg_prime under a derived public key. */
export function verifyWithKey(
  derivedPublicKey: KeyObject,
  info: Uint8Array,
  msg: Uint8Array,
  signature: Uint8Array,
): boolean {
  if (!(signature instanceof Uint8Array) || signature.length !== MODULUS_BYTES) return false;
  return nodeVerify(
    'sha384',
    messagePrime(info, msg),
    { key: derivedPublicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: SALT_BYTES },
    signature,
  );
}

export function derivedPublicKey(n: bigint, info: Uint8Array): KeyObject {
  return publicKeyObject(n, derivePublicExponent(n, info));
}

/** Verification with node:crypto (the relay's redemption path), derived key cached per day. */
export class RsaVerifier {
  private readonly days = new DayCache<KeyObject>();

  constructor(readonly key: RsaPublicKey) {}

  verify(day: number, msg: Uint8Array, signature: Uint8Array): boolean {
    const info = ticketInfoV2(day);
    const publicKey = this.days.get(day, () => derivedPublicKey(this.key.n, info));
    return verifyWithKey(publicKey, info, msg, signature);
  }
}

// ---- client: the reference library -----------------------------------------------------------

const suite = RSAPBSSA.SHA384.PSS.Deterministic();

async function importForLibrary(spki: Uint8Array): Promise<webcrypto.CryptoKey> {
  const key = rsaPublicKey(spki); // every check before the library sees the key
  return webcrypto.subtle.importKey('spki', key.spki, { name: 'RSA-PSS', hash: 'SHA-384' }, true, [
    'verify',
  ]);
}

export interface Blinded {
  /** Sent to the relay. */
  blindedMsg: Uint8Array;
  /** r^-1 mod n: kept by the client until finalize. */
  inv: Uint8Array;
}

/** The client's Blind: salt and r come from the platform's CSPRNG, inside the library. */
export async function blind(spki: Uint8Array, info: Uint8Array, msg: Uint8Array): Promise<Blinded> {
  const publicKey = await importForLibrary(spki);
  const { blindedMsg, inv } = await suite.blind(publicKey, msg, info);
  return { blindedMsg, inv };
}

/** The client's Finalize: unblinds and verifies; throws on a signature that does not verify. */
export async function finalize(
  spki: Uint8Array,
  info: Uint8Array,
  msg: Uint8Array,
  blindSig: Uint8Array,
  inv: Uint8Array,
): Promise<Uint8Array> {
  checkBlock(blindSig, 'blind signature');
  checkBlock(inv, 'blinding inverse');
  const publicKey = await importForLibrary(spki);
  return suite.finalize(publicKey, msg, info, blindSig, inv);
}

/** The library's Verify (what a client or another implementation checks). */
export async function verify(
  spki: Uint8Array,
  info: Uint8Array,
  msg: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  if (!(signature instanceof Uint8Array) || signature.length !== MODULUS_BYTES) return false;
  const publicKey = await importForLibrary(spki);
  return suite.verify(publicKey, signature, msg, info);
}
