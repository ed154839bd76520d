import type { Algorithm } from './algorithm.js';

/**
 * Targets are 256-bit unsigned integers; a hash meets a target when the hash, read as a
 * little-endian integer, is <= the target.
 */

export const MAX_TARGET = (1n << 256n) - 1n;

/** Difficulty-1 target of Stratum's difficulty unit, per algorithm. */
export const DIFF1_TARGET: Readonly<Record<Algorithm, bigint>> = {
  sha256d: 0xffffn << 208n,
  // Scrypt pools quote difficulty 65536 times larger than sha256 difficulty for one target.
  scrypt: 0xffffn << 224n,
};

/**
 * Expected hashes per unit of share difficulty: a hash meets the difficulty-D target
 * floor(diff1 ÷ D) with probability about diff1 ÷ (D · 2^256), so a share takes
 * D · 2^256 ÷ diff1 hashes on average: 2^48 ÷ 65535 ≈ 2^32 for sha256d, 2^32 ÷ 65535 ≈ 2^16
 * for scrypt.
 */
export function hashesPerDifficulty(algorithm: Algorithm): number {
  return 2 ** 256 / Number(DIFF1_TARGET[algorithm]);
}

/**
 * Smallest difficulty we accept anywhere. Regtest's network difficulty (~4.7e-10 in sha256d
 * units) sits above it; anything lower is a misconfiguration or hostile input.
 */
export const MIN_DIFFICULTY = 2 ** -32;

export class TargetError extends Error {
  override name = 'TargetError';
}

/** Expand compact nBits into a target. Negative or overflowing encodings are rejected. */
export function nbitsToTarget(nbits: number): bigint {
  if (!Number.isInteger(nbits) || nbits < 0 || nbits > 0xffffffff) {
    throw new TargetError(`nbits: not a uint32: ${nbits}`);
  }
  const exponent = nbits >>> 24;
  const mantissa = nbits & 0x007fffff;
  if (nbits & 0x00800000 && mantissa !== 0) throw new TargetError('nbits: negative target');
  const target =
    exponent <= 3
      ? BigInt(mantissa >>> (8 * (3 - exponent)))
      : BigInt(mantissa) << BigInt(8 * (exponent - 3));
  if (target > MAX_TARGET) throw new TargetError('nbits: target overflows 256 bits');
  return target;
}

/** Compact nBits of a target (Bitcoin's GetCompact: rounds down to 3 significant bytes). */
export function targetToNbits(target: bigint): number {
  if (target < 0n || target > MAX_TARGET) throw new TargetError('target out of range');
  if (target === 0n) return 0;
  let size = (target.toString(16).length + 1) >> 1;
  let mantissa =
    size <= 3 ? Number(target << BigInt(8 * (3 - size))) : Number(target >> BigInt(8 * (size - 3)));
  // The sign bit of the mantissa must stay clear: shift one byte into the exponent.
  if (mantissa & 0x00800000) {
    mantissa >>>= 8;
    size += 1;
  }
  return ((size << 24) | mantissa) >>> 0;
}

function checkDifficulty(difficulty: number): void {
  if (!Number.isFinite(difficulty) || difficulty < MIN_DIFFICULTY) {
    throw new TargetError(`difficulty must be a finite number >= ${MIN_DIFFICULTY}`);
  }
}

/**
 * Share target of a float difficulty: floor(diff1 / difficulty), exact for every double
 * (the double is split into an integer mantissa and a power of two).
 */
export function difficultyToTarget(difficulty: number, algorithm: Algorithm): bigint {
  checkDifficulty(difficulty);
  let mantissa = difficulty;
  let shift = 0n;
  while (!Number.isInteger(mantissa)) {
    mantissa *= 2;
    shift += 1n;
  }
  const target = (DIFF1_TARGET[algorithm] << shift) / BigInt(mantissa);
  return target > MAX_TARGET ? MAX_TARGET : target;
}

/** Difficulty of a target, as a float (inverse of difficultyToTarget up to rounding). */
export function targetToDifficulty(target: bigint, algorithm: Algorithm): number {
  if (target <= 0n) throw new TargetError('target must be positive');
  // 64 extra bits keep full double precision for targets far above diff1 (regtest).
  return Number((DIFF1_TARGET[algorithm] << 64n) / target) / 2 ** 64;
}

/** A hash in internal (little-endian) byte order as an integer. */
export function hashToBigInt(hash: Uint8Array): bigint {
  if (hash.length !== 32) throw new TargetError('hash must be 32 bytes');
  return BigInt(`0x${Buffer.from(hash).reverse().toString('hex')}`);
}

export function hashMeetsTarget(hash: Uint8Array, target: bigint): boolean {
  return hashToBigInt(hash) <= target;
}

/** The difficulty a hash actually achieved (for share accounting and logs). */
export function hashDifficulty(hash: Uint8Array, algorithm: Algorithm): number {
  const value = hashToBigInt(hash);
  return value === 0n ? Number.POSITIVE_INFINITY : targetToDifficulty(value, algorithm);
}
