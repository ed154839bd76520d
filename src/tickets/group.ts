import { randomBytes } from 'node:crypto';
import { ristretto255 } from '@noble/curves/ed25519.js';

/**
 * ristretto255 encodings, strict (docs/design.md §6.1): points are the 32-byte canonical encoding,
 * never the identity; scalars are 32 bytes little-endian and < q. Anything else is refused
 * with a TicketFormatError, so malformed input can never reach the group arithmetic.
 */

export const Point = ristretto255.Point;
export type Point = InstanceType<typeof ristretto255.Point>;
export const Q: bigint = ristretto255.Point.Fn.ORDER;
/**
 * The generator with its own window-8 table: noble's default table for BASE is smaller, and
 * g^u, g^s, g^ρ, g^σ are in every issuance and verification (2× faster measured).
 */
export const G: Point = ristretto255.Point.fromBytes(ristretto255.Point.BASE.toBytes()).precompute(
  8,
  false,
);

export class TicketFormatError extends Error {
  override name = 'TicketFormatError';
}

/** Source of random bytes (a CSPRNG in production, fixed bytes in tests). */
export type RandomBytes = (length: number) => Uint8Array;

/** The operating system's CSPRNG: the default everywhere a RandomBytes is taken. */
export const csprng: RandomBytes = (length) => new Uint8Array(randomBytes(length));

export function mod(value: bigint): bigint {
  const r = value % Q;
  return r < 0n ? r + Q : r;
}

export function encodePoint(point: Point): Uint8Array {
  return point.toBytes();
}

export function decodePoint(bytes: Uint8Array, what: string): Point {
  if (bytes.length !== 32) throw new TicketFormatError(`${what}: expected 32 bytes`);
  let point: Point;
  try {
    point = Point.fromBytes(bytes);
  } catch {
    throw new TicketFormatError(`${what}: not a canonical ristretto255 encoding`);
  }
  if (point.is0()) throw new TicketFormatError(`${what}: the identity is not allowed`);
  return point;
}

export function encodeScalar(scalar: bigint): Uint8Array {
  if (scalar < 0n || scalar >= Q) throw new RangeError('scalar out of range');
  const out = new Uint8Array(32);
  let v = scalar;
  for (let i = 0; i < 32; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

export function decodeScalar(bytes: Uint8Array, what: string): bigint {
  if (bytes.length !== 32) throw new TicketFormatError(`${what}: expected 32 bytes`);
  let v = 0n;
  for (let i = 31; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i] as number);
  if (v >= Q) throw new TicketFormatError(`${what}: scalar not reduced (>= group order)`);
  return v;
}

/** Uniform non-zero scalar: 64 random bytes reduced mod q (bias ~2^-259). */
export function randomScalar(random: RandomBytes): bigint {
  for (;;) {
    const bytes = random(64);
    let v = 0n;
    for (let i = 63; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i] as number);
    const s = v % Q;
    if (s !== 0n) return s;
  }
}
