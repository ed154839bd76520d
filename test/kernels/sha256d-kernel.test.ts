import { describe, expect, it } from 'vitest';
import { reversed, toHex } from '../../src/work/hex.js';
import { createSha256dScanner, hashSha256d } from '../../src/work/kernels/sha256d-kernel.js';
import { hashMeetsTarget, hashToBigInt, MAX_TARGET } from '../../src/work/target.js';
import { nodeSha256d, randomHeaders, topWord, vectorOf, withNonce } from './fixtures.js';

const headers = randomHeaders(200, 0x5eed256d);

/** Every nonce of the range whose pre-filter word is <= targetWord, by node:crypto. */
function expectedCandidates(header: Uint8Array, start: number, count: number, word: number) {
  const out: number[] = [];
  for (let nonce = start; nonce < start + count; nonce++) {
    if (topWord(nodeSha256d(withNonce(header, nonce))) <= word) out.push(nonce);
  }
  return out;
}

describe('hashSha256d', () => {
  it('matches node:crypto on 200 random headers', () => {
    for (const header of headers) {
      expect(toHex(hashSha256d(header))).toBe(toHex(nodeSha256d(header)));
    }
  });

  it('reproduces the real block hash and it meets the target from bits', () => {
    const { vector, header, target } = vectorOf('sha256d');
    const hash = hashSha256d(header);
    expect(toHex(reversed(hash))).toBe(vector.powHash);
    expect(hashMeetsTarget(hash, target)).toBe(true);
  });

  it('rejects a header that is not 80 bytes', () => {
    expect(() => hashSha256d(new Uint8Array(79))).toThrow(RangeError);
    expect(() => hashSha256d(new Uint8Array(81))).toThrow(/expected 80 bytes, got 81/);
  });
});

describe('sha256d scanner', () => {
  it('finds exactly the pre-filter candidates node:crypto finds, on 200 random jobs', () => {
    const scanner = createSha256dScanner();
    headers.forEach((header, i) => {
      // Odd starts and lengths so ranges straddle the 4-nonce vectors.
      const start = (header[76] as number) * 0xfefefe + i;
      const count = 29 + (i % 7);
      const word = 0x1fffffff; // about 1 in 8 nonces
      scanner.setJob(header.subarray(0, 76));
      expect(scanner.scan(start, count, word)).toEqual(
        expectedCandidates(header, start, count, word),
      );
    });
  });

  it('never misses a nonce that meets the full target (easy target, full hashes compared)', () => {
    const scanner = createSha256dScanner();
    const target = (0x0fffffffn << 224n) | 0xabcdefn; // about 1 in 16 nonces
    for (const header of headers.slice(0, 40)) {
      scanner.setJob(header.subarray(0, 76));
      const start = 1000;
      const count = 203;
      const qualifying: number[] = [];
      for (let nonce = start; nonce < start + count; nonce++) {
        if (hashMeetsTarget(nodeSha256d(withNonce(header, nonce)), target)) qualifying.push(nonce);
      }
      const candidates = new Set(scanner.scan(start, count, Number(target >> 224n)));
      for (const nonce of qualifying) expect(candidates.has(nonce)).toBe(true);
      const shares = scanner.findShares(start, count, target);
      expect(shares.map((s) => s.nonce)).toEqual(qualifying);
      for (const share of shares) {
        expect(toHex(share.hash)).toBe(toHex(nodeSha256d(withNonce(header, share.nonce))));
      }
    }
  });

  it('compares inclusively: a hash equal to the target meets it, one above does not', () => {
    const scanner = createSha256dScanner();
    const header = headers[9] as Uint8Array;
    scanner.setJob(header.subarray(0, 76));
    const nonce = 0x01020304;
    const hash = nodeSha256d(withNonce(header, nonce));
    const word = topWord(hash);
    expect(scanner.scan(nonce, 1, word)).toEqual([nonce]);
    expect(scanner.scan(nonce, 1, word - 1)).toEqual([]);
    const exact = hashToBigInt(hash);
    expect(scanner.findShares(nonce, 1, exact).map((s) => s.nonce)).toEqual([nonce]);
    expect(scanner.findShares(nonce, 1, exact - 1n)).toEqual([]);
  });

  it('finds the winning nonce of a real block in a range around it', () => {
    const { vector, header, target } = vectorOf('sha256d');
    const scanner = createSha256dScanner();
    scanner.setJob(header.subarray(0, 76));
    const start = vector.nonce - 100_001;
    const shares = scanner.findShares(start, 250_003, target);
    expect(shares.map((s) => s.nonce)).toEqual([vector.nonce]);
    expect(toHex(reversed(shares[0]?.hash ?? new Uint8Array()))).toBe(vector.powHash);
  });

  it('handles ranges that are not whole vectors, empty, single, and ending at 2^32 - 1', () => {
    const header = headers[7] as Uint8Array;
    const scanner = createSha256dScanner();
    scanner.setJob(header.subarray(0, 76));
    const all = 0xffffffff;
    expect(scanner.scan(12345, 0, all)).toEqual([]);
    expect(scanner.scan(12345, 1, all)).toEqual([12345]);
    for (const count of [2, 3, 5, 6, 7, 9]) {
      expect(scanner.scan(101, count, all)).toEqual(
        Array.from({ length: count }, (_, i) => 101 + i),
      );
    }
    // The last vector would hold 2^32 and 2^32 + 1, which wrap to 0 and 1: never reported.
    expect(scanner.scan(0xfffffffe, 2, all)).toEqual([0xfffffffe, 0xffffffff]);
    expect(scanner.scan(0xffffffff, 1, all)).toEqual([0xffffffff]);
    const end = 0xffffffff - 40;
    expect(scanner.scan(end, 41, 0x3fffffff)).toEqual(
      expectedCandidates(header, end, 41, 0x3fffffff),
    );
    expect(scanner.findShares(0xfffffffd, 3, MAX_TARGET).map((s) => s.nonce)).toEqual([
      0xfffffffd, 0xfffffffe, 0xffffffff,
    ]);
  });

  it('returns every candidate when there are more than its buffer holds', () => {
    const scanner = createSha256dScanner();
    scanner.setJob((headers[3] as Uint8Array).subarray(0, 76));
    const found = scanner.scan(77, 5003, 0xffffffff);
    expect(found).toHaveLength(5003);
    expect(found[0]).toBe(77);
    expect(found[5002]).toBe(77 + 5002);
  });

  it('keeps jobs apart: a new job changes the candidates', () => {
    const scanner = createSha256dScanner();
    const [a, b] = headers as [Uint8Array, Uint8Array];
    scanner.setJob(a.subarray(0, 76));
    const first = scanner.scan(0, 400, 0x0fffffff);
    scanner.setJob(b.subarray(0, 76));
    expect(scanner.scan(0, 400, 0x0fffffff)).toEqual(expectedCandidates(b, 0, 400, 0x0fffffff));
    scanner.setJob(a.subarray(0, 76));
    expect(scanner.scan(0, 400, 0x0fffffff)).toEqual(first);
  });

  it('rejects bad inputs with clear errors', () => {
    const scanner = createSha256dScanner();
    expect(() => scanner.scan(0, 4, 0)).toThrow(/setJob before scan/);
    expect(() => scanner.setJob(new Uint8Array(80))).toThrow(/header76: expected 76 bytes, got 80/);
    expect(() => scanner.setJob([0, 1] as unknown as Uint8Array)).toThrow(TypeError);
    scanner.setJob(new Uint8Array(76));
    expect(() => scanner.scan(-1, 4, 0)).toThrow(RangeError);
    expect(() => scanner.scan(1.5, 4, 0)).toThrow(/nonceStart/);
    expect(() => scanner.scan(2 ** 32, 0, 0)).toThrow(/nonceStart/);
    expect(() => scanner.scan(0, -1, 0)).toThrow(/count/);
    expect(() => scanner.scan(0, Number.NaN, 0)).toThrow(/count/);
    expect(() => scanner.scan(0xfffffffe, 3, 0)).toThrow(
      /count: expected an integer in \[0, 2\^32 - nonceStart\] = \[0, 2\]/,
    );
    expect(() => scanner.scan(0, 4, 2 ** 32)).toThrow(/targetWord/);
    expect(() => scanner.scan(0, 4, -1)).toThrow(/targetWord/);
    expect(() => scanner.findShares(0, 4, -1n)).toThrow(/target/);
    expect(() => scanner.findShares(0, 4, 1n << 256n)).toThrow(/target/);
  });
});
