import { describe, expect, it } from 'vitest';
import { reversed, toHex } from '../../src/work/hex.js';
import { createScryptKernel, hashScrypt } from '../../src/work/kernels/scrypt-kernel.js';
import { hashMeetsTarget, hashToBigInt, MAX_TARGET } from '../../src/work/target.js';
import { nodeScrypt, randomHeaders, vectorOf, withNonce } from './fixtures.js';

const headers = randomHeaders(200, 0x5c2197);
const kernel = createScryptKernel();

describe('scrypt kernel', () => {
  it('hash matches node:crypto scryptSync on 200 random headers', () => {
    for (const header of headers)
      expect(toHex(kernel.hash(header))).toBe(toHex(nodeScrypt(header)));
  });

  it('hash4 matches node:crypto on the same 200 headers, four at a time', () => {
    for (let i = 0; i < headers.length; i += 4) {
      const four = new Uint8Array(320);
      for (let k = 0; k < 4; k++) four.set(headers[i + k] as Uint8Array, 80 * k);
      const out = kernel.hash4(four);
      for (let k = 0; k < 4; k++) {
        expect(toHex(out.subarray(32 * k, 32 * k + 32))).toBe(
          toHex(nodeScrypt(headers[i + k] as Uint8Array)),
        );
      }
    }
  });

  it('hashScrypt (shared per-thread instance) agrees', () => {
    const header = headers[11] as Uint8Array;
    expect(toHex(hashScrypt(header))).toBe(toHex(nodeScrypt(header)));
  });

  it('reproduces the Litecoin genesis PoW hash, and scan finds its nonce', () => {
    const { vector, header, target } = vectorOf('scrypt');
    const hash = kernel.hash(header);
    expect(toHex(reversed(hash))).toBe(vector.powHash);
    expect(hashMeetsTarget(hash, target)).toBe(true);
    const shares = kernel.scan(header.subarray(0, 76), vector.nonce - 45, 103, target);
    expect(shares.map((s) => s.nonce)).toEqual([vector.nonce]);
    expect(toHex(shares[0]?.hash ?? new Uint8Array())).toBe(toHex(hash));
  });

  it('scan returns exactly the nonces meeting an easy target, with their hashes', () => {
    const target = (0x3fffffffn << 224n) | 0x1234n; // about 1 in 4
    for (const header of headers.slice(0, 6)) {
      const start = (header[76] as number) + 3; // not a multiple of four
      const count = 23;
      const expected = [];
      for (let nonce = start; nonce < start + count; nonce++) {
        const hash = nodeScrypt(withNonce(header, nonce));
        if (hashMeetsTarget(hash, target)) expected.push({ nonce, hash: toHex(hash) });
      }
      const shares = kernel.scan(header.subarray(0, 76), start, count, target);
      expect(shares.map((s) => ({ nonce: s.nonce, hash: toHex(s.hash) }))).toEqual(expected);
    }
  });

  it('scan compares inclusively: a hash equal to the target meets it, one above does not', () => {
    const header76 = (headers[8] as Uint8Array).subarray(0, 76);
    const exact = hashToBigInt(nodeScrypt(withNonce(header76, 77)));
    expect(kernel.scan(header76, 77, 1, exact).map((s) => s.nonce)).toEqual([77]);
    expect(kernel.scan(header76, 77, 1, exact - 1n)).toEqual([]);
  });

  it('scan handles empty, single, partial-vector ranges and the end of the nonce space', () => {
    const header76 = (headers[5] as Uint8Array).subarray(0, 76);
    expect(kernel.scan(header76, 9, 0, MAX_TARGET)).toEqual([]);
    const one = kernel.scan(header76, 9, 1, MAX_TARGET);
    expect(one.map((s) => s.nonce)).toEqual([9]);
    expect(toHex(one[0]?.hash ?? new Uint8Array())).toBe(toHex(nodeScrypt(withNonce(header76, 9))));
    const end = kernel.scan(header76, 0xfffffffd, 3, MAX_TARGET);
    expect(end.map((s) => s.nonce)).toEqual([0xfffffffd, 0xfffffffe, 0xffffffff]);
    for (const share of end) {
      expect(toHex(share.hash)).toBe(toHex(nodeScrypt(withNonce(header76, share.nonce))));
    }
  });

  it('scan returns every share when there are more than its candidate buffer holds', () => {
    const header76 = (headers[6] as Uint8Array).subarray(0, 76);
    const shares = kernel.scan(header76, 1000, 70, MAX_TARGET);
    expect(shares.map((s) => s.nonce)).toEqual(Array.from({ length: 70 }, (_, i) => 1000 + i));
    expect(toHex(shares[69]?.hash ?? new Uint8Array())).toBe(
      toHex(nodeScrypt(withNonce(header76, 1069))),
    );
  });

  it('rejects bad inputs with clear errors', () => {
    const header76 = new Uint8Array(76);
    expect(() => kernel.hash(new Uint8Array(76))).toThrow(/header80: expected 80 bytes, got 76/);
    expect(() => kernel.hash4(new Uint8Array(80))).toThrow(/headers: expected 320 bytes/);
    expect(() => kernel.hash('00' as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => kernel.scan(new Uint8Array(80), 0, 1, MAX_TARGET)).toThrow(/header76/);
    expect(() => kernel.scan(header76, -1, 1, MAX_TARGET)).toThrow(RangeError);
    expect(() => kernel.scan(header76, 0xffffffff, 2, MAX_TARGET)).toThrow(/count/);
    expect(() => kernel.scan(header76, 0, 0.5, MAX_TARGET)).toThrow(/count/);
    expect(() => kernel.scan(header76, 0, 1, MAX_TARGET + 1n)).toThrow(/target/);
  });
});
