import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256, sha384 } from '@noble/hashes/sha2.js';
import { TicketFormatError } from '../../tickets/group.js';

/**
 * The browser's src/tickets/rsa-scheme.ts (the bundler swaps it in, scripts/build-browser.mjs):
 * the public half of tickets v2 (docs/design.md §6.5) in BigInt and @noble/hashes, where the
 * Node module uses node:crypto. Same names, same bytes; the private half (keys, signing) is
 * not here, so a bundle that reached for it would fail to build. The shared descriptor check
 * (src/tickets/descriptor.ts) reaches this twin for `rsaPublicKey` and `rsaKeyId`.
 *
 * WebCrypto cannot stand in: it refuses RSA public exponents other than small ones, and a
 * day's derived exponent e' has ~1,022 bits, so the page does its modular arithmetic itself.
 */

export const MODULUS_BITS = 2048;
export const MODULUS_BYTES = MODULUS_BITS / 8;
export const PUBLIC_EXPONENT = 65537n;
export const SALT_BYTES = 48;
export const KEY_ID_BYTES = 8;
const INFO_PREFIX = new TextEncoder().encode('powbridge/ticket/v2');

export interface RsaPublicKey {
  n: bigint;
  e: bigint;
  spki: Uint8Array;
  keyId: Uint8Array;
}

export function ticketInfoV2(day: number): Uint8Array {
  if (!Number.isInteger(day) || day < 0 || day > 0xffffffff) {
    throw new TicketFormatError('rsa: day must be a uint32');
  }
  const out = new Uint8Array(INFO_PREFIX.length + 4);
  out.set(INFO_PREFIX);
  new DataView(out.buffer).setUint32(INFO_PREFIX.length, day, false);
  return out;
}

export function bytesToBigInt(bytes: Uint8Array): bigint {
  let hex = '';
  for (const byte of bytes) hex += byte.toString(16).padStart(2, '0');
  return hex.length === 0 ? 0n : BigInt(`0x${hex}`);
}

export function bigIntToBytes(x: bigint, length: number): Uint8Array {
  if (x < 0n) throw new RangeError('rsa: negative integer');
  const hex = x.toString(16).padStart(length * 2, '0');
  if (hex.length > length * 2) throw new RangeError(`rsa: integer too large for ${length} bytes`);
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

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

/** base^exponent mod m, square and multiply over the exponent's bits. */
export function modPow(base: bigint, exponent: bigint, m: bigint): bigint {
  let result = 1n;
  const b = base % m;
  for (const bit of exponent.toString(2)) {
    result = (result * result) % m;
    if (bit === '1') result = (result * b) % m;
  }
  return result;
}

/**
 * The one SPKI DER a 2048-bit RSA key with e = 65537 has (what node:crypto exports): the
 * SubjectPublicKeyInfo header, INTEGER n with its leading zero byte, INTEGER 65537. Comparing
 * against it is the Node module's canonical re-encoding check.
 */
const SPKI_HEAD = new Uint8Array([
  0x30, 0x82, 0x01, 0x22, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01,
  0x01, 0x05, 0x00, 0x03, 0x82, 0x01, 0x0f, 0x00, 0x30, 0x82, 0x01, 0x0a, 0x02, 0x82, 0x01, 0x01,
  0x00,
]);
const SPKI_TAIL = new Uint8Array([0x02, 0x03, 0x01, 0x00, 0x01]);
const SPKI_BYTES = SPKI_HEAD.length + MODULUS_BYTES + SPKI_TAIL.length;

function spkiOf(n: bigint): Uint8Array {
  const out = new Uint8Array(SPKI_BYTES);
  out.set(SPKI_HEAD);
  out.set(bigIntToBytes(n, MODULUS_BYTES), SPKI_HEAD.length);
  out.set(SPKI_TAIL, SPKI_HEAD.length + MODULUS_BYTES);
  return out;
}

export function rsaKeyId(spki: Uint8Array): Uint8Array {
  return sha256(spki).slice(0, KEY_ID_BYTES);
}

/** A public key from its SPKI DER: only the canonical encoding of a 2048-bit, e = 65537 key. */
export function rsaPublicKey(spki: Uint8Array): RsaPublicKey {
  if (spki.length !== SPKI_BYTES) {
    throw new TicketFormatError('rsa: public key is not an SPKI DER RSA key of 2048 bits');
  }
  const n = bytesToBigInt(spki.subarray(SPKI_HEAD.length, SPKI_HEAD.length + MODULUS_BYTES));
  if (n.toString(2).length !== MODULUS_BITS || n % 2n === 0n) {
    throw new TicketFormatError(`rsa: modulus must be ${MODULUS_BITS} bits`);
  }
  const canonical = spkiOf(n);
  if (!canonical.every((byte, i) => byte === spki[i])) {
    throw new TicketFormatError('rsa: public key is not canonically encoded (e must be 65537)');
  }
  return { n, e: PUBLIC_EXPONENT, spki: canonical, keyId: rsaKeyId(canonical) };
}

/** The draft's DerivePublicExponent: HKDF-SHA384("key" ‖ info ‖ 0x00, salt = n, "PBRSA"). */
export function derivePublicExponent(n: bigint, info: Uint8Array): bigint {
  const modulusLength = Math.ceil(n.toString(2).length / 8);
  const lambdaLength = modulusLength >> 1;
  const ikm = new Uint8Array(3 + info.length + 1);
  ikm.set(new TextEncoder().encode('key'));
  ikm.set(info, 3);
  const expanded = hkdf(
    sha384,
    ikm,
    bigIntToBytes(n, modulusLength),
    new TextEncoder().encode('PBRSA'),
    lambdaLength + 16,
  );
  expanded[0] = (expanded[0] ?? 0) & 0x3f;
  expanded[lambdaLength - 1] = (expanded[lambdaLength - 1] ?? 0) | 0x01;
  return bytesToBigInt(expanded.subarray(0, lambdaLength));
}

export function messagePrime(info: Uint8Array, msg: Uint8Array): Uint8Array {
  const out = new Uint8Array(3 + 4 + info.length + msg.length);
  out.set(new TextEncoder().encode('msg'));
  new DataView(out.buffer).setUint32(3, info.length, false);
  out.set(info, 7);
  out.set(msg, 7 + info.length);
  return out;
}
