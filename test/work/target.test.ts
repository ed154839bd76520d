import { describe, expect, it } from 'vitest';
import {
  DIFF1_TARGET,
  difficultyToTarget,
  hashDifficulty,
  hashMeetsTarget,
  MAX_TARGET,
  MIN_DIFFICULTY,
  nbitsToTarget,
  TargetError,
  targetToDifficulty,
  targetToNbits,
} from '../../src/work/target.js';

function leHash(value: bigint): Uint8Array {
  return Uint8Array.from(Buffer.from(value.toString(16).padStart(64, '0'), 'hex').reverse());
}

describe('nbits', () => {
  // Cases from Bitcoin Core's arith_uint256 SetCompact/GetCompact tests.
  const compact: [number, bigint, number][] = [
    [0x01123456, 0x12n, 0x01120000],
    [0x02123456, 0x1234n, 0x02123400],
    [0x03123456, 0x123456n, 0x03123456],
    [0x04123456, 0x12345600n, 0x04123456],
    [0x05009234, 0x92340000n, 0x05009234],
    [0x20123456, 0x123456n << 232n, 0x20123456],
    [0x1d00ffff, 0xffffn << 208n, 0x1d00ffff],
    [0x1a44b9f2, 0x44b9f2n << 184n, 0x1a44b9f2],
    [0x1e0ffff0, 0x0ffff0n << 216n, 0x1e0ffff0],
    [0x207fffff, 0x7fffffn << 232n, 0x207fffff],
  ];
  for (const [bits, target, back] of compact) {
    it(`0x${bits.toString(16)} <-> target`, () => {
      expect(nbitsToTarget(bits)).toBe(target);
      expect(targetToNbits(target)).toBe(back);
    });
  }

  it('zero mantissa is a zero target', () => {
    expect(nbitsToTarget(0x01003456)).toBe(0n);
    expect(nbitsToTarget(0)).toBe(0n);
    expect(targetToNbits(0n)).toBe(0);
  });

  it('rejects negative, overflowing and non-uint32 encodings', () => {
    expect(() => nbitsToTarget(0x01fedcba)).toThrow(/negative/);
    expect(() => nbitsToTarget(0x04923456)).toThrow(TargetError);
    expect(() => nbitsToTarget(0xff123456)).toThrow(/overflows/);
    expect(() => nbitsToTarget(-1)).toThrow(/uint32/);
    expect(() => nbitsToTarget(1.5)).toThrow(/uint32/);
    expect(() => targetToNbits(MAX_TARGET + 1n)).toThrow(TargetError);
  });

  it('targetToNbits keeps the mantissa sign bit clear', () => {
    // 0x80 as the leading byte would read as negative; it must move into the exponent.
    expect(targetToNbits(0x80n)).toBe(0x02008000);
    expect(nbitsToTarget(0x02008000)).toBe(0x80n);
  });
});

describe('difficulty', () => {
  it('difficulty 1 is the diff-1 target of each algorithm', () => {
    expect(difficultyToTarget(1, 'sha256d')).toBe(0xffffn << 208n);
    expect(difficultyToTarget(1, 'scrypt')).toBe(0xffffn << 224n);
  });

  it('scrypt difficulty is sha256 difficulty × 65536 for the same target', () => {
    expect(difficultyToTarget(65536, 'scrypt')).toBe(difficultyToTarget(1, 'sha256d'));
    expect(difficultyToTarget(3 * 65536, 'scrypt')).toBe(difficultyToTarget(3, 'sha256d'));
  });

  it('is exact floor(diff1 / d) for fractional and integral floats', () => {
    expect(difficultyToTarget(0.5, 'sha256d')).toBe(DIFF1_TARGET.sha256d * 2n);
    expect(difficultyToTarget(3, 'sha256d')).toBe(DIFF1_TARGET.sha256d / 3n);
    // 0.1 is not 1/10 as a double: floor(diff1 * 2^55 / 3602879701896397).
    expect(difficultyToTarget(0.1, 'sha256d')).toBe(
      (DIFF1_TARGET.sha256d << 55n) / 3602879701896397n,
    );
    expect(difficultyToTarget(2 ** 60, 'sha256d')).toBe(DIFF1_TARGET.sha256d >> 60n);
  });

  it('round-trips through targetToDifficulty', () => {
    for (const d of [MIN_DIFFICULTY, 1e-6, 0.001, 0.75, 1, 16, 1234.5678, 65536, 1e9, 5.6e13]) {
      for (const algorithm of ['sha256d', 'scrypt'] as const) {
        const target = difficultyToTarget(d, algorithm);
        if (target === MAX_TARGET) continue; // clamped: checked below
        const back = targetToDifficulty(target, algorithm);
        expect(Math.abs(back - d) / d).toBeLessThan(1e-12);
      }
    }
  });

  it('regtest network difficulty sits above the floor', () => {
    const regtest = nbitsToTarget(0x207fffff);
    expect(targetToDifficulty(regtest, 'sha256d')).toBeGreaterThan(MIN_DIFFICULTY);
    expect(targetToDifficulty(regtest, 'sha256d')).toBeCloseTo(4.656542e-10, 15);
  });

  it('clamps huge targets to 2^256-1', () => {
    expect(difficultyToTarget(MIN_DIFFICULTY, 'scrypt')).toBe(MAX_TARGET);
  });

  it('rejects difficulties below the floor, zero, negative, NaN and infinity', () => {
    for (const bad of [MIN_DIFFICULTY / 2, 0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => difficultyToTarget(bad, 'sha256d')).toThrow(TargetError);
    }
    expect(() => targetToDifficulty(0n, 'sha256d')).toThrow(TargetError);
  });
});

describe('hash against target', () => {
  const target = difficultyToTarget(1, 'sha256d');

  it('compares the hash as a little-endian integer, inclusive', () => {
    expect(hashMeetsTarget(leHash(target), target)).toBe(true);
    expect(hashMeetsTarget(leHash(target + 1n), target)).toBe(false);
    expect(hashMeetsTarget(leHash(0n), target)).toBe(true);
    // Same bytes in big-endian order would be a tiny number; it must not pass.
    const bigEndian = leHash(MAX_TARGET - 5n).reverse();
    expect(hashMeetsTarget(bigEndian.reverse(), target)).toBe(false);
  });

  it('hashDifficulty is the difficulty the hash achieved', () => {
    expect(hashDifficulty(leHash(target), 'sha256d')).toBeCloseTo(1, 12);
    expect(hashDifficulty(leHash(target / 1000n), 'sha256d')).toBeCloseTo(1000, 6);
    expect(hashDifficulty(leHash(0n), 'sha256d')).toBe(Number.POSITIVE_INFINITY);
  });

  it('rejects hashes that are not 32 bytes', () => {
    expect(() => hashMeetsTarget(new Uint8Array(31), target)).toThrow(TargetError);
  });
});
