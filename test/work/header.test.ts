import { describe, expect, it } from 'vitest';
import { sha256d } from '../../src/work/hash.js';
import {
  HeaderError,
  headerFromJob,
  parseHeader,
  prevhashFromStratum,
  prevhashToStratum,
  serializeHeader,
} from '../../src/work/header.js';
import { HexError, isHex, parseHex, parseU32Hex, toHex, u32ToHex } from '../../src/work/hex.js';
import type { Job } from '../../src/work/job.js';
import {
  merkleBranchesForCoinbase,
  merkleRoot,
  merkleRootFromBranches,
} from '../../src/work/merkle.js';
import {
  BIP320_MASK,
  negotiateMask,
  rollVersion,
  versionBitsWithinMask,
} from '../../src/work/version.js';

function randomBytes(n: number, seed: number): Uint8Array {
  // Deterministic filler so failures reproduce.
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

const job: Job = {
  jobId: 'a1',
  prevhash: toHex(randomBytes(32, 1)),
  coinb1: toHex(randomBytes(41, 2)),
  coinb2: toHex(randomBytes(60, 3)),
  merkleBranch: [toHex(randomBytes(32, 4)), toHex(randomBytes(32, 5))],
  version: '20000000',
  nbits: '1d00ffff',
  ntime: '5f5e1000',
  clean: true,
};
const share = { jobId: 'a1', extranonce2: '00000001', ntime: '5f5e1001', nonce: 'deadbeef' };

describe('hex', () => {
  it('parses strictly and names the field', () => {
    expect(toHex(parseHex('00ff', 'x'))).toBe('00ff');
    expect(() => parseHex('0f0', 'extranonce2')).toThrow(/extranonce2: not an even-length/);
    expect(() => parseHex('zz', 'nonce')).toThrow(HexError);
    expect(() => parseHex(12, 'nonce')).toThrow(/expected a hex string/);
    expect(() => parseHex('0011', 'extranonce2', 4)).toThrow(/expected 4 bytes of hex, got 2/);
    expect(isHex('AbCd', 2)).toBe(true);
    expect(isHex('abc')).toBe(false);
  });

  it('uint32 hex is big-endian', () => {
    expect(u32ToHex(1)).toBe('00000001');
    expect(u32ToHex(0xffffffff)).toBe('ffffffff');
    expect(parseU32Hex('20000000', 'version')).toBe(0x20000000);
  });
});

describe('prevhash word swap', () => {
  it('un-swaps each 4-byte word and is its own inverse', () => {
    const internal = parseHex(
      '81cd02ab7e569e8bcd9317e2fe99f2de44d49ab2b8851ba4a308000000000000',
      'prevhash',
    );
    const stratum = prevhashToStratum(internal);
    expect(stratum).toBe('ab02cd818b9e567ee21793cddef299feb29ad444a41b85b8000008a300000000');
    expect(toHex(prevhashFromStratum(stratum))).toBe(toHex(internal));
  });
});

describe('headerFromJob', () => {
  it('writes big-endian Stratum fields little-endian into the header', () => {
    const { header, coinbase } = headerFromJob(job, 'f0f0f0f0', share, null);
    const fields = parseHeader(header);
    expect(fields.version).toBe(0x20000000);
    expect(fields.ntime).toBe(0x5f5e1001);
    expect(fields.nbits).toBe(0x1d00ffff);
    expect(fields.nonce).toBe(0xdeadbeef);
    expect(toHex(header.slice(76, 80))).toBe('efbeadde');
    expect(toHex(fields.prevhash)).toBe(toHex(prevhashFromStratum(job.prevhash)));
    expect(toHex(coinbase)).toBe(`${job.coinb1}f0f0f0f000000001${job.coinb2}`);
    const branches = job.merkleBranch.map((b) => parseHex(b, 'b', 32));
    expect(toHex(fields.merkleRoot)).toBe(
      toHex(merkleRootFromBranches(sha256d(coinbase), branches)),
    );
  });

  it('changing the extranonce changes the merkle root, not the other fields', () => {
    const a = parseHeader(headerFromJob(job, 'f0f0f0f0', share, null).header);
    const b = parseHeader(headerFromJob(job, 'f0f0f0f1', share, null).header);
    expect(toHex(a.merkleRoot)).not.toBe(toHex(b.merkleRoot));
    expect(toHex(a.prevhash)).toBe(toHex(b.prevhash));
  });

  it('rolls version bits inside the mask and rejects bits outside it', () => {
    const rolled = headerFromJob(
      job,
      'f0f0f0f0',
      { ...share, versionBits: '00ffe000' },
      BIP320_MASK,
    );
    expect(rolled.version).toBe(0x20ffe000);
    expect(parseHeader(rolled.header).version).toBe(0x20ffe000);
    expect(() =>
      headerFromJob(job, 'f0f0f0f0', { ...share, versionBits: '00001000' }, BIP320_MASK),
    ).toThrow(HeaderError);
    // Without a negotiated mask any non-zero bits are outside it.
    expect(() =>
      headerFromJob(job, 'f0f0f0f0', { ...share, versionBits: '00002000' }, null),
    ).toThrow(/outside the negotiated version mask/);
  });

  it('names the malformed field', () => {
    expect(() => headerFromJob(job, 'f0f0f0f0', { ...share, nonce: 'beef' }, null)).toThrow(
      /nonce/,
    );
    expect(() => headerFromJob(job, 'xyz', share, null)).toThrow(/extranonce1/);
    expect(() => headerFromJob({ ...job, merkleBranch: ['00'] }, 'f0f0f0f0', share, null)).toThrow(
      /merkleBranch\[0\]/,
    );
    expect(() => headerFromJob({ ...job, prevhash: '00' }, 'f0f0f0f0', share, null)).toThrow(
      /prevhash/,
    );
  });

  it('serializeHeader and parseHeader reject wrong sizes', () => {
    expect(() => parseHeader(new Uint8Array(79))).toThrow(HeaderError);
    expect(() =>
      serializeHeader({
        version: 1,
        prevhash: new Uint8Array(31),
        merkleRoot: new Uint8Array(32),
        ntime: 0,
        nbits: 0,
        nonce: 0,
      }),
    ).toThrow(HeaderError);
  });
});

describe('version rolling helpers', () => {
  it('follows BIP310: (job & ~mask) | (bits & mask)', () => {
    expect(rollVersion(0x20000000, 0x1fffe000, BIP320_MASK)).toBe(0x3fffe000);
    expect(rollVersion(0x3fffe004, 0, BIP320_MASK)).toBe(0x20000004);
    expect(versionBitsWithinMask(0x00002000, BIP320_MASK)).toBe(true);
    expect(versionBitsWithinMask(0x00001000, BIP320_MASK)).toBe(false);
    expect(versionBitsWithinMask(0x80000000, 0xffffffff)).toBe(true);
    expect(negotiateMask(BIP320_MASK, 0x00ffff00)).toBe(0x00ffe000);
  });
});

describe('merkle branches', () => {
  it('fold to the full-tree root for every block size from 1 to 33 transactions', () => {
    for (let n = 1; n <= 33; n++) {
      const txids = Array.from({ length: n }, (_, i) => randomBytes(32, n * 100 + i + 1));
      const [coinbase, ...rest] = txids;
      const branches = merkleBranchesForCoinbase(rest);
      expect(branches).toHaveLength(Math.ceil(Math.log2(n)));
      expect(toHex(merkleRootFromBranches(coinbase as Uint8Array, branches))).toBe(
        toHex(merkleRoot(txids)),
      );
    }
  });

  it('a lone coinbase is its own root', () => {
    const coinbase = randomBytes(32, 9);
    expect(merkleBranchesForCoinbase([])).toEqual([]);
    expect(toHex(merkleRoot([coinbase]))).toBe(toHex(coinbase));
    expect(() => merkleRoot([])).toThrow(RangeError);
  });
});
