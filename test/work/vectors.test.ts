import { describe, expect, it } from 'vitest';
import { sha256d } from '../../src/work/hash.js';
import {
  headerFromJob,
  parseHeader,
  prevhashToStratum,
  serializeHeader,
} from '../../src/work/header.js';
import { parseHex, reversed, toHex, u32ToHex } from '../../src/work/hex.js';
import {
  merkleBranchesForCoinbase,
  merkleRoot,
  merkleRootFromBranches,
} from '../../src/work/merkle.js';
import { createPowHasher } from '../../src/work/pow.js';
import { hashMeetsTarget, nbitsToTarget } from '../../src/work/target.js';
import { blockFixtures, headerVectors } from '../helpers/vectors.js';

const vectors = headerVectors();

describe('real headers (test/vectors/headers.json)', () => {
  it('has both algorithms', () => {
    expect(new Set(vectors.map((v) => v.algorithm))).toEqual(new Set(['sha256d', 'scrypt']));
  });

  for (const v of vectors) {
    describe(`${v.chain} #${v.height}`, () => {
      it('serializes the header from its fields', () => {
        const header = serializeHeader({
          version: v.version,
          prevhash: reversed(parseHex(v.prevhash, 'prevhash', 32)),
          merkleRoot: reversed(parseHex(v.merkleRoot, 'merkleRoot', 32)),
          ntime: v.time,
          nbits: Number.parseInt(v.bits, 16),
          nonce: v.nonce,
        });
        expect(toHex(header)).toBe(v.header);
        const fields = parseHeader(header);
        expect(fields.nonce).toBe(v.nonce);
        expect(fields.nbits).toBe(Number.parseInt(v.bits, 16));
      });

      it('reproduces the block hash (sha256d, display order)', () => {
        expect(toHex(reversed(sha256d(parseHex(v.header, 'header', 80))))).toBe(v.hash);
      });

      it('reproduces the PoW hash through WebAssembly and it meets the target from bits', async () => {
        const pow = await (await createPowHasher(v.algorithm))(parseHex(v.header, 'header', 80));
        expect(toHex(reversed(pow))).toBe(v.powHash);
        const target = nbitsToTarget(Number.parseInt(v.bits, 16));
        expect(hashMeetsTarget(pow, target)).toBe(true);
      });

      it('a different nonce no longer meets the target', async () => {
        const header = parseHex(v.header, 'header', 80);
        header[76] = (header[76] as number) ^ 1;
        const pow = await (await createPowHasher(v.algorithm))(header);
        expect(hashMeetsTarget(pow, nbitsToTarget(Number.parseInt(v.bits, 16)))).toBe(false);
      });
    });
  }
});

describe('Stratum job path on a real block (Litecoin genesis)', () => {
  const genesis = vectors.find((v) => v.chain === 'litecoin-mainnet' && v.height === 0);
  const { tx, txid } = blockFixtures.litecoinGenesisCoinbase;

  it('the fixture coinbase is the genesis merkle root', () => {
    expect(toHex(reversed(sha256d(parseHex(tx, 'tx'))))).toBe(txid);
    expect(genesis?.merkleRoot).toBe(txid);
  });

  it('coinb1 ‖ extranonce1 ‖ extranonce2 ‖ coinb2 rebuilds the exact header and PoW', async () => {
    if (!genesis) throw new Error('vector missing');
    // Cut the real coinbase so that 4 + 4 bytes of its scriptSig play the extranonces.
    const cut = 60;
    const job = {
      jobId: '1',
      prevhash: prevhashToStratum(reversed(parseHex(genesis.prevhash, 'prevhash', 32))),
      coinb1: tx.slice(0, cut * 2),
      coinb2: tx.slice((cut + 8) * 2),
      merkleBranch: [],
      version: u32ToHex(genesis.version),
      nbits: genesis.bits,
      ntime: u32ToHex(genesis.time),
      clean: true,
    };
    const built = headerFromJob(
      job,
      tx.slice(cut * 2, (cut + 4) * 2),
      {
        jobId: '1',
        extranonce2: tx.slice((cut + 4) * 2, (cut + 8) * 2),
        ntime: u32ToHex(genesis.time),
        nonce: u32ToHex(genesis.nonce),
      },
      null,
    );
    expect(toHex(built.header)).toBe(genesis.header);
    expect(toHex(built.coinbase)).toBe(tx);
    const pow = await (await createPowHasher('scrypt'))(built.header);
    expect(toHex(reversed(pow))).toBe(genesis.powHash);
  });
});

describe('merkle branches on a real block (Bitcoin #100000)', () => {
  const { txids, merkleRoot: root } = blockFixtures.bitcoinBlock100000;
  const internal = txids.map((t) => reversed(parseHex(t, 'txid', 32)));

  it('full tree gives the published root', () => {
    expect(toHex(reversed(merkleRoot(internal)))).toBe(root);
  });

  it('coinbase hash folded with the Stratum branches gives the same root', () => {
    const [coinbase, ...rest] = internal;
    const branches = merkleBranchesForCoinbase(rest);
    expect(branches).toHaveLength(2);
    expect(toHex(reversed(merkleRootFromBranches(coinbase as Uint8Array, branches)))).toBe(root);
  });
});
