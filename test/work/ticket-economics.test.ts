import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ALGORITHMS, type Algorithm } from '../../src/work/algorithm.js';
import { powHash } from '../../src/work/pow.js';
import {
  difficultyToTarget,
  hashesPerDifficulty,
  hashMeetsTarget,
  MAX_TARGET,
  nbitsToTarget,
  targetToDifficulty,
} from '../../src/work/target.js';
import {
  hashesPerBlock,
  minerSide,
  networkShareDifficulty,
  relaySide,
  TermsError,
  termsAssumptions,
  ticketEconomics,
  type TicketTerms,
} from '../../src/work/ticket-economics.js';

/**
 * The terms arithmetic against first principles: a hash meets a target T with probability
 * (T + 1) / 2^256, so a share at difficulty D takes 2^256 / (T + 1) hashes on average, with T
 * what src/work's own target code makes of D, and the real kernels find shares that often.
 */

const TWO_256 = 2n ** 256n;

/** Expected hashes to meet `target`, straight from the probability. */
function hashesToMeet(target: bigint): number {
  // Scaled so the quotient keeps full double precision.
  return Number((TWO_256 << 64n) / (target + 1n)) / 2 ** 64;
}

const DEFAULT_TERMS: TicketTerms = {
  algorithm: 'scrypt',
  price: 16,
  ticketDifficulty: 1,
  windowSeconds: 600,
  targetShareSeconds: 15,
  groups: [
    { minTickets: 1, leaf: 'group4' },
    { minTickets: 4, leaf: 'group1' },
  ],
};

/** Deterministic 80-byte headers: a counter hashed into the merkle-root field. */
function header(i: number): Uint8Array {
  const bytes = new Uint8Array(80);
  bytes.set(createHash('sha256').update(`ticket-economics ${i}`).digest(), 36);
  new DataView(bytes.buffer).setUint32(76, i, true);
  return bytes;
}

describe('hashes per difficulty', () => {
  it('sha256d: a difficulty-1 share is 2^48 / 65535 ≈ 2^32 hashes', () => {
    expect(hashesPerDifficulty('sha256d')).toBeCloseTo(2 ** 48 / 65535, 3);
    expect(hashesPerDifficulty('sha256d') / 2 ** 32 - 1).toBeCloseTo(1 / 65535, 12);
  });

  it('scrypt: a difficulty-1 share is 2^32 / 65535 ≈ 2^16 hashes (target 0x0000ffff…)', () => {
    expect(hashesPerDifficulty('scrypt')).toBeCloseTo(2 ** 32 / 65535, 9);
    expect(hashesPerDifficulty('scrypt') / 2 ** 16 - 1).toBeCloseTo(1 / 65535, 12);
    expect(hashesPerDifficulty('sha256d') / hashesPerDifficulty('scrypt')).toBe(65536);
  });

  for (const algorithm of ALGORITHMS) {
    it(`${algorithm}: D × hashes per difficulty is 2^256 / (target + 1) of difficultyToTarget`, () => {
      for (const d of [2 ** -20, 2 ** -16, 2 ** -10, 0.001, 1, 16, 1000, 2 ** 20, 5e7]) {
        const target = difficultyToTarget(d, algorithm);
        // Below scrypt's 2^-16 the target is every hash (MAX_TARGET): no longer linear.
        if (target === MAX_TARGET) continue;
        const expected = hashesToMeet(target);
        expect(Math.abs((d * hashesPerDifficulty(algorithm)) / expected - 1)).toBeLessThan(1e-9);
      }
    });
  }

  // About 1 share in 16 hashes: 1,600 hashes of fixed headers meet it about 100 times.
  const cases: [Algorithm, number][] = [
    ['sha256d', 16 / hashesPerDifficulty('sha256d')],
    ['scrypt', 16 / hashesPerDifficulty('scrypt')],
  ];
  for (const [algorithm, difficulty] of cases) {
    it(`${algorithm}: the real kernel finds shares as often as that`, () => {
      const target = difficultyToTarget(difficulty, algorithm);
      const n = 1600;
      let found = 0;
      for (let i = 0; i < n; i += 1) {
        if (hashMeetsTarget(powHash(algorithm, header(i)), target)) found += 1;
      }
      const mean = n / (difficulty * hashesPerDifficulty(algorithm));
      expect(mean).toBeCloseTo(100, 6);
      // Binomial(1600, 1/16): sd ≈ 9.7; 5 sd either side. The headers are fixed, so the count
      // is too: this fails only if the unit is wrong (a factor 2 is 10 sd away).
      expect(found).toBeGreaterThan(mean - 50);
      expect(found).toBeLessThan(mean + 50);
    });
  }
});

describe('network difficulty as a node reports it', () => {
  it("Litecoin's regtest (bits 207fffff, getdifficulty 4.656542373906925e-10) is ~2 hashes a block", () => {
    // The figure litecoind -regtest's getdifficulty prints (Litecoin Core 0.21.2.1).
    const getdifficulty = 4.656542373906925e-10;
    const target = nbitsToTarget(0x207fffff);
    // Core computes it in doubles from the compact form: equal to 1e-9, not to the last bit.
    expect(targetToDifficulty(target, 'sha256d') / getdifficulty - 1).toBeCloseTo(0, 9);
    expect(hashesPerBlock(getdifficulty) / hashesToMeet(target) - 1).toBeCloseTo(0, 9);
    expect(hashesPerBlock(getdifficulty)).toBeCloseTo(2, 6);
  });

  it("Litecoin's genesis (bits 1e0ffff0, difficulty 2^-12) is 16 in scrypt share units", () => {
    const target = nbitsToTarget(0x1e0ffff0);
    const getdifficulty = targetToDifficulty(target, 'sha256d');
    expect(getdifficulty).toBe(2 ** -12);
    expect(hashesPerBlock(getdifficulty) / hashesToMeet(target) - 1).toBeCloseTo(0, 9);
    expect(networkShareDifficulty(getdifficulty, 'scrypt')).toBe(16);
    expect(networkShareDifficulty(getdifficulty, 'sha256d')).toBe(2 ** -12);
  });
});

describe('the miner side', () => {
  it("the relay's defaults: a ticket is 16 scrypt shares at difficulty 1, ~1.05 M hashes", () => {
    const miner = minerSide(DEFAULT_TERMS, 4096);
    expect(miner.hashesPerCredit).toBeCloseTo(2 ** 32 / 65535, 6);
    expect(miner.hashesPerTicket).toBeCloseTo((16 * 2 ** 32) / 65535, 6);
    expect(Math.round(miner.hashesPerTicket)).toBe(1_048_592);
    expect(miner.secondsPerTicket).toBeCloseTo(miner.hashesPerTicket / 4096, 9);
    expect(miner.ticketsPerHour).toBeCloseTo(3600 / miner.secondsPerTicket, 9);
    // 256 s a ticket at one share per 15 s: about 17 shares, spread 1/√17.
    expect(miner.sharesPerTicket).toBeCloseTo(miner.secondsPerTicket / 15, 9);
    expect(miner.timeSpread).toBeCloseTo(1 / Math.sqrt(miner.hashesPerTicket / 4096 / 15), 9);
    expect(miner.timeSpread).toBeCloseTo(0.242, 3);
  });

  it('credit is work: price 8 at ticketDifficulty 2 costs what price 16 at 1 does', () => {
    const a = minerSide(DEFAULT_TERMS, 1000);
    const b = minerSide({ ...DEFAULT_TERMS, price: 8, ticketDifficulty: 2 }, 1000);
    expect(b.hashesPerTicket).toBeCloseTo(a.hashesPerTicket, 6);
    const c = minerSide({ ...DEFAULT_TERMS, algorithm: 'sha256d' }, 1000);
    expect(c.hashesPerTicket / a.hashesPerTicket).toBe(65536);
  });

  it('a group of N tickets needs N per window, as a share of what the miner earns', () => {
    // 4096 H/s earns 14.06 tickets an hour; a 600 s window needs 6 (1 ticket) or 24 (4).
    const miner = minerSide(DEFAULT_TERMS, 4096);
    expect(miner.groups.map((g) => [g.leaf, g.ticketsPerHour])).toEqual([
      ['group4', 6],
      ['group1', 24],
    ]);
    expect(miner.groups[0]?.shareOfEarnings).toBeCloseTo(6 / miner.ticketsPerHour, 9);
    expect(miner.groups[1]?.shareOfEarnings).toBeGreaterThan(1);
    const longWindow = minerSide({ ...DEFAULT_TERMS, windowSeconds: 3600 }, 4096);
    expect(longWindow.groups[0]?.ticketsPerHour).toBe(1);
  });

  it('a ticket cheaper than a share still waits for one share', () => {
    const miner = minerSide({ ...DEFAULT_TERMS, price: 1 }, 1e6);
    expect(miner.sharesPerTicket).toBeLessThan(1);
    expect(miner.timeSpread).toBe(1);
  });

  it('refuses terms or a hash rate that are not positive', () => {
    expect(() => minerSide(DEFAULT_TERMS, 0)).toThrow(TermsError);
    expect(() => minerSide({ ...DEFAULT_TERMS, price: -1 }, 1)).toThrow(/price/);
    expect(() => minerSide({ ...DEFAULT_TERMS, windowSeconds: Number.NaN }, 1)).toThrow(
      /windowSeconds/,
    );
  });
});

describe('the relay side', () => {
  const hashrate = 5000;
  const miner = minerSide(DEFAULT_TERMS, hashrate);

  it('values the work at its share of the expected hashes of a block', () => {
    const networkDifficulty = 6e7;
    const relay = relaySide(DEFAULT_TERMS, hashrate, miner, {
      basis: { kind: 'network', networkDifficulty, blockReward: 6.25, poolFeePercent: 0 },
      coin: 'LTC',
      upstreamDifficulty: null,
    });
    const perBlock = (networkDifficulty * 2 ** 48) / 65535;
    expect(relay.hashesPerBlock).toBeCloseTo(perBlock, -3);
    expect(relay.networkShareDifficulty).toBe(networkDifficulty * 65536);
    expect(relay.valuePerTicket / ((miner.hashesPerTicket / perBlock) * 6.25) - 1).toBeCloseTo(
      0,
      12,
    );
    expect(relay.valuePerHour / ((hashrate * 3600 * 6.25) / perBlock) - 1).toBeCloseTo(0, 12);
    expect(relay.blockChancePerTicket).toBeCloseTo(miner.hashesPerTicket / perBlock, 20);
    expect((relay.secondsPerBlock ?? 0) / (perBlock / hashrate) - 1).toBeCloseTo(0, 12);
    expect(relay.forwardedPerTicket).toBeNull();
  });

  it('takes a pool fee off the reward and counts shares forwarded at the upstream difficulty', () => {
    const relay = relaySide(DEFAULT_TERMS, hashrate, miner, {
      basis: { kind: 'network', networkDifficulty: 6e7, blockReward: 6.25, poolFeePercent: 2 },
      coin: 'LTC',
      upstreamDifficulty: 64,
    });
    const noFee = relaySide(DEFAULT_TERMS, hashrate, miner, {
      basis: { kind: 'network', networkDifficulty: 6e7, blockReward: 6.25, poolFeePercent: 0 },
      coin: 'LTC',
      upstreamDifficulty: null,
    });
    expect(relay.valuePerTicket / noFee.valuePerTicket).toBeCloseTo(0.98, 12);
    // 16 credit at difficulty 1 is a quarter of one difficulty-64 share.
    expect(relay.forwardedPerTicket).toBe(0.25);
    expect(relay.forwardedPerHour).toBeCloseTo(0.25 * miner.ticketsPerHour, 9);
  });

  it("values the work at a pool's pay per difficulty-1 share", () => {
    const relay = relaySide(DEFAULT_TERMS, hashrate, miner, {
      basis: { kind: 'share-value', shareValue: 1e-9 },
      coin: 'LTC',
      upstreamDifficulty: null,
    });
    expect(relay.valuePerTicket).toBeCloseTo(16 * 1e-9, 20);
    expect(relay.hashesPerBlock).toBeNull();
    expect(relay.blockChancePerTicket).toBeNull();
  });

  it('refuses a fee of 100% or more, and values that are not positive', () => {
    const input = (poolFeePercent: number, networkDifficulty = 1) => ({
      basis: { kind: 'network' as const, networkDifficulty, blockReward: 1, poolFeePercent },
      coin: 'LTC',
      upstreamDifficulty: null,
    });
    expect(() => relaySide(DEFAULT_TERMS, 1, miner, input(100))).toThrow(/pool fee/);
    expect(() => relaySide(DEFAULT_TERMS, 1, miner, input(-1))).toThrow(/pool fee/);
    expect(() => relaySide(DEFAULT_TERMS, 1, miner, input(0, 0))).toThrow(/network difficulty/);
  });

  it('states its assumptions, the relay ones only with a relay side', () => {
    const without = ticketEconomics(DEFAULT_TERMS, hashrate, null);
    expect(without.relay).toBeNull();
    const withRelay = ticketEconomics(DEFAULT_TERMS, hashrate, {
      basis: { kind: 'network', networkDifficulty: 1, blockReward: 1, poolFeePercent: 0 },
      coin: 'LTC',
      upstreamDifficulty: null,
    });
    expect(termsAssumptions(without).join(' ')).toMatch(/expected value/);
    expect(termsAssumptions(without).join(' ')).not.toMatch(/block reward/);
    expect(termsAssumptions(withRelay).join(' ')).toMatch(/variance/);
  });
});
