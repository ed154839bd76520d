import { ristretto255_hasher } from '@noble/curves/ed25519.js';
import { sha256 } from '@noble/hashes/sha2.js';
import {
  decodePoint,
  encodePoint,
  G,
  Q,
  mod,
  type Point,
  type RandomBytes,
  randomScalar,
} from './group.js';

/**
 * Abe–Okamoto partially blind WI-Schnorr signatures over ristretto255 (docs/design.md §6.1), as pure
 * functions with randomness passed in. The common information `info` binds a ticket to one
 * relay key and one day; the signer never sees the message (SHA-256 of the client's x_c), so
 * it cannot link a ticket to the session that issued it.
 *
 * Only the issuer (src/tickets/issuer.ts) may call the signer half: Abe–Okamoto is forgeable
 * when many signing sessions for one (key, day) are open at once (ROS), which the issuer caps.
 */

const TEXT = new TextEncoder();
export const INFO_PREFIX = TEXT.encode('powbridge/ticket/v1');
export const DST_F = TEXT.encode('powbridge-v1-ao-F');
export const DST_H = TEXT.encode('powbridge-v1-ao-H');

export interface SignerKey {
  x: bigint;
  y: Point;
  keyId: Uint8Array;
}

/** Public half of a ticket key, with its precomputed window table. */
export interface VerifierKey {
  y: Point;
  keyId: Uint8Array;
}

/** Key id = first 8 bytes of SHA-256(y). */
export function keyIdOf(y: Point): Uint8Array {
  return sha256(encodePoint(y)).slice(0, 8);
}

/** Build a signing key from its secret scalar; y gets a window table (used every issuance). */
export function signerKey(x: bigint): SignerKey {
  if (x <= 0n || x >= Q) throw new RangeError('secret scalar out of range');
  const y = G.multiply(x).precompute(8, false);
  return { x, y, keyId: keyIdOf(y) };
}

export function generateSignerKey(random: RandomBytes): SignerKey {
  return signerKey(randomScalar(random));
}

export function verifierKey(publicKey: Uint8Array): VerifierKey {
  const y = decodePoint(publicKey, 'publicKey').precompute(8, false);
  return { y, keyId: keyIdOf(y) };
}

/** info = "powbridge/ticket/v1" ‖ keyId ‖ day (uint32 BE, UTC days since 1970-01-01). */
export function ticketInfo(keyId: Uint8Array, day: number): Uint8Array {
  if (keyId.length !== 8) throw new RangeError('keyId must be 8 bytes');
  if (!Number.isInteger(day) || day < 0 || day > 0xffffffff) throw new RangeError('bad day');
  const info = new Uint8Array(INFO_PREFIX.length + 12);
  info.set(INFO_PREFIX, 0);
  info.set(keyId, INFO_PREFIX.length);
  new DataView(info.buffer).setUint32(INFO_PREFIX.length + 8, day, false);
  return info;
}

/** F(info): RFC 9380 hash_to_ristretto255 with our DST. Never g^k: its log must be unknown. */
export function infoPoint(info: Uint8Array): Point {
  return ristretto255_hasher.hashToCurve(info, { DST: DST_F });
}

/** Length prefix: 2 bytes big-endian. Every field is length-prefixed so none can shift into another. */
function lp(bytes: Uint8Array): Uint8Array {
  if (bytes.length > 0xffff) throw new RangeError('field too long');
  const out = new Uint8Array(2 + bytes.length);
  out[0] = bytes.length >> 8;
  out[1] = bytes.length & 0xff;
  out.set(bytes, 2);
  return out;
}

/**
 * Encodings of the long-lived points (y per key, z per day). Encoding a ristretto point costs
 * an inverse square root (~90 µs here), and every H needs y and z again.
 */
const staticEncodings = new WeakMap<Point, Uint8Array>();

function encodeStatic(point: Point): Uint8Array {
  let bytes = staticEncodings.get(point);
  if (!bytes) {
    bytes = encodePoint(point);
    staticEncodings.set(point, bytes);
  }
  return bytes;
}

/** H(α, β, z, y, info, msg) → scalar (RFC 9497 HashToScalar with our DST). */
export function challengeHash(
  alpha: Point,
  beta: Point,
  z: Point,
  y: Point,
  info: Uint8Array,
  msg: Uint8Array,
): bigint {
  const parts = [encodePoint(alpha), encodePoint(beta), encodeStatic(z), encodeStatic(y)].map(lp);
  parts.push(lp(info), lp(msg));
  const input = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    input.set(p, at);
    at += p.length;
  }
  return mod(ristretto255_hasher.hashToScalar(input, { DST: DST_H }));
}

/** The serial of a ticket: msg = SHA-256(x_c). */
export function ticketMessage(xc: Uint8Array): Uint8Array {
  if (xc.length !== 32) throw new RangeError('x_c must be 32 bytes');
  return sha256(xc);
}

// ---- signer ------------------------------------------------------------------------------

/** Secret per-session state; must be used for exactly one answer, then forgotten. */
export interface SignerSession {
  u: bigint;
  s: bigint;
  d: bigint;
}

export interface SignerCommitment {
  a: Point;
  b: Point;
}

/** Step 1: fresh u, s, d (never deterministic); a = g^u, b = g^s z^d. */
export function signerCommit(
  z: Point,
  random: RandomBytes,
): { session: SignerSession; commitment: SignerCommitment } {
  const u = randomScalar(random);
  const s = randomScalar(random);
  const d = randomScalar(random);
  return {
    session: { u, s, d },
    commitment: { a: G.multiply(u), b: G.multiply(s).add(z.multiply(d)) },
  };
}

export interface SignerResponse {
  r: bigint;
  c: bigint;
  s: bigint;
  d: bigint;
}

/** Step 3: c = e − d, r = u − c·x. */
export function signerRespond(key: SignerKey, session: SignerSession, e: bigint): SignerResponse {
  if (e < 0n || e >= Q) throw new RangeError('e out of range');
  const c = mod(e - session.d);
  const r = mod(session.u - c * key.x);
  return { r, c, s: session.s, d: session.d };
}

// ---- client ------------------------------------------------------------------------------

export interface Blinding {
  t1: bigint;
  t2: bigint;
  t3: bigint;
  t4: bigint;
  /** ε = H(α, β, z, y, info, msg), kept to finish. */
  epsilon: bigint;
}

/** Step 2: blind the commitment; e = ε − t2 − t4 goes to the signer. */
export function clientChallenge(
  key: VerifierKey,
  z: Point,
  info: Uint8Array,
  commitment: SignerCommitment,
  msg: Uint8Array,
  random: RandomBytes,
): { e: bigint; blinding: Blinding } {
  const [t1, t2, t3, t4] = [1, 2, 3, 4].map(() => randomScalar(random)) as [
    bigint,
    bigint,
    bigint,
    bigint,
  ];
  const alpha = commitment.a.add(G.multiply(t1)).add(key.y.multiply(t2));
  const beta = commitment.b.add(G.multiply(t3)).add(z.multiply(t4));
  const epsilon = challengeHash(alpha, beta, z, key.y, info, msg);
  return { e: mod(epsilon - t2 - t4), blinding: { t1, t2, t3, t4, epsilon } };
}

export interface Signature {
  rho: bigint;
  omega: bigint;
  sigma: bigint;
  delta: bigint;
}

export class SignatureError extends Error {
  override name = 'SignatureError';
}

/**
 * Step 4: check the signer's answer against its commitment (a = g^r y^c, b = g^s z^d), then
 * unblind. A signer that answers inconsistently is caught here, before anything is stored.
 */
export function clientUnblind(
  key: VerifierKey,
  z: Point,
  commitment: SignerCommitment,
  response: SignerResponse,
  blinding: Blinding,
): Signature {
  const { r, c, s, d } = response;
  for (const v of [r, c, s, d]) {
    if (v < 0n || v >= Q) throw new SignatureError('response scalar out of range');
  }
  if (!G.multiplyUnsafe(r).add(key.y.multiplyUnsafe(c)).equals(commitment.a)) {
    throw new SignatureError('signer response does not match commitment a');
  }
  if (!G.multiplyUnsafe(s).add(z.multiplyUnsafe(d)).equals(commitment.b)) {
    throw new SignatureError('signer response does not match commitment b');
  }
  if (mod(c + d) !== mod(blinding.epsilon - blinding.t2 - blinding.t4)) {
    throw new SignatureError('signer response does not answer our challenge');
  }
  return {
    rho: mod(r + blinding.t1),
    omega: mod(c + blinding.t2),
    sigma: mod(s + blinding.t3),
    delta: mod(d + blinding.t4),
  };
}

// ---- verifier ----------------------------------------------------------------------------

/** ω + δ = H(g^ρ y^ω, g^σ z^δ, z, y, info, msg). Public inputs: variable-time is fine. */
export function verifySignature(
  key: VerifierKey,
  z: Point,
  info: Uint8Array,
  msg: Uint8Array,
  signature: Signature,
): boolean {
  const { rho, omega, sigma, delta } = signature;
  const alpha = G.multiplyUnsafe(rho).add(key.y.multiplyUnsafe(omega));
  const beta = G.multiplyUnsafe(sigma).add(z.multiplyUnsafe(delta));
  if (alpha.is0() || beta.is0()) return false;
  return mod(omega + delta) === challengeHash(alpha, beta, z, key.y, info, msg);
}

/** z = F(info) per (key, day), with a window table; cached since every ticket of a day uses it. */
export class InfoPointCache {
  private readonly cache = new Map<string, { info: Uint8Array; z: Point }>();

  constructor(private readonly maxEntries = 64) {}

  get(keyId: Uint8Array, day: number): { info: Uint8Array; z: Point } {
    const id = `${Buffer.from(keyId).toString('hex')}:${day}`;
    let hit = this.cache.get(id);
    if (!hit) {
      const info = ticketInfo(keyId, day);
      hit = { info, z: infoPoint(info).precompute(8, false) };
      if (this.cache.size >= this.maxEntries) {
        this.cache.delete(this.cache.keys().next().value as string);
      }
      this.cache.set(id, hit);
    }
    return hit;
  }
}
