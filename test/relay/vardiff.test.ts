import { describe, expect, it } from 'vitest';
import { DEFAULT_VARDIFF, Vardiff } from '../../src/relay/vardiff.js';

const config = { ...DEFAULT_VARDIFF, minDifficulty: 1 / 64, maxDifficulty: 1024 };
const isPowerOfTwo = (d: number) => Number.isInteger(Math.log2(d));

/** Feed shares at a fixed interval, as a miner of constant hash rate would. */
function simulate(hashrateDiffPerSecond: number, seconds: number, start = 1) {
  const vd = new Vardiff(config, start, 0);
  const history: number[] = [];
  let credit = 0;
  for (let t = 1; t <= seconds; t++) {
    credit += hashrateDiffPerSecond;
    while (credit >= vd.difficulty) {
      credit -= vd.difficulty;
      const next = vd.onShare(t, Number.POSITIVE_INFINITY);
      if (next !== null) history.push(next);
    }
    const next = vd.onTick(t, Number.POSITIVE_INFINITY);
    if (next !== null) history.push(next);
  }
  return { vd, history };
}

describe('Vardiff', () => {
  it('converges to about one share per target interval, in powers of two', () => {
    // 4 difficulty-units per second at 15 s per share → 60, nearest power of two 64.
    const { vd, history } = simulate(4, 1200);
    expect(vd.difficulty).toBe(64);
    expect(history.every(isPowerOfTwo)).toBe(true);
  });

  it('each step changes difficulty by at most maxStep', () => {
    const { history } = simulate(500, 600);
    let previous = 1;
    for (const d of history) {
      expect(Math.max(d / previous, previous / d)).toBeLessThanOrEqual(DEFAULT_VARDIFF.maxStep);
      previous = d;
    }
    // 500 units/s × 15 s would be 7500: capped at maxDifficulty.
    expect(history.at(-1)).toBe(1024);
  });

  it('an idle client goes down on the timer, to the floor', () => {
    const vd = new Vardiff(config, 16, 0);
    expect(vd.onTick(59, Infinity)).toBeNull();
    expect(vd.onTick(60, Infinity)).toBe(4);
    expect(vd.onTick(120, Infinity)).toBe(1);
    expect(vd.onTick(180, Infinity)).toBe(0.25);
    for (let t = 240; t < 1000; t += 60) vd.onTick(t, Infinity);
    expect(vd.difficulty).toBe(1 / 64);
  });

  it('never exceeds the ceiling (upstream difficulty), even above the floor', () => {
    const { vd } = simulate(1e6, 300);
    expect(vd.difficulty).toBe(1024);
    // The upstream difficulty fell: clamp applies the new ceiling at once.
    expect(vd.clamp(100)).toBe(100);
    expect(vd.clamp(100)).toBeNull();
    for (let i = 0; i < 50; i++) vd.onShare(400 + i, 100);
    expect(vd.difficulty).toBeLessThanOrEqual(100);
    // A ceiling below the floor still wins: clients must not mine harder than upstream.
    const low = new Vardiff(config, 1, 0);
    expect(low.clamp(1 / 1000)).toBe(1 / 1000);
  });
});

describe('Vardiff: fast miners and old work', () => {
  /** Shares found at an exact rate of `rate` difficulty units per second, one by one. */
  function fastMiner(rate: number, start: number, until: (vd: Vardiff, t: number) => boolean) {
    const wide = { ...DEFAULT_VARDIFF, minDifficulty: 2 ** -20, maxDifficulty: 2 ** 40 };
    const vd = new Vardiff(wide, start, 0);
    const steps: { t: number; share: number; from: number; to: number }[] = [];
    let t = 0;
    for (let share = 1; !until(vd, t); share++) {
      const from = vd.difficulty;
      t += from / rate;
      const next = vd.onShare(t, Number.POSITIVE_INFINITY);
      if (next !== null) steps.push({ t, share, from, to: next });
    }
    return { vd, steps, t };
  }

  it('a miner thousands of times too fast is within 4× of its difficulty in seconds, by steps of at most maxStep', () => {
    // 4096 units/s at 15 s a share wants 61,440 (2^15.9); it starts at 1: ~4,000 shares/s.
    const { steps, t } = fastMiner(4096, 1, (vd) => vd.difficulty >= 2 ** 14);
    expect(t).toBeLessThan(10);
    for (const { from, to } of steps) {
      expect(to / from).toBeLessThanOrEqual(DEFAULT_VARDIFF.maxStep);
      expect(isPowerOfTwo(to)).toBe(true);
    }
    // While it is 16× or more too fast, every fastShares shares is a step (not every
    // retargetShares): 2^12 after 6 steps of 4 shares, in about a second.
    const first = steps.slice(0, 6);
    expect(first.map((s) => s.to)).toEqual([4, 16, 64, 256, 1024, 4096]);
    expect(first.map((s) => s.share)).toEqual([4, 8, 12, 16, 20, 24]);
    expect(first.at(-1)?.t).toBeLessThan(1.5);
  });

  it('does not retarget early on a handful of shares at about the target rate', () => {
    const vd = new Vardiff(config, 1, 0);
    // Four shares in 20 s at 15 s a share is a bit fast, nowhere near 16×: wait for more.
    for (const t of [5, 10, 15, 20]) expect(vd.onShare(t, Infinity)).toBeNull();
    // Four shares within a second (60× the target rate): retarget at once, by maxStep.
    const quick = new Vardiff(config, 1, 0);
    expect([0.25, 0.5, 0.75].map((t) => quick.onShare(t, Infinity))).toEqual([null, null, null]);
    expect(quick.onShare(1, Infinity)).toBe(4);
  });

  it('weighs shares by the difficulty they were credited at: old work at a lower one does not make it overshoot', () => {
    // At 4 now, eight shares of work sent at 1 over 32 s: 0.25 units/s, 3.75 per 15 s: stay.
    const old = new Vardiff(config, 4, 0);
    for (let i = 1; i <= 8; i++) expect(old.onShare(4 * i, Infinity, 1)).toBeNull();
    expect(old.difficulty).toBe(4);
    // The same eight shares at 4 are four times the work: up by 4.
    const current = new Vardiff(config, 4, 0);
    const steps = [1, 2, 3, 4, 5, 6, 7, 8].map((i) => current.onShare(4 * i, Infinity, 4));
    expect(steps.at(-1)).toBe(16);
  });

  it('suggest: takes the asked difficulty within the floor and the ceiling', () => {
    const vd = new Vardiff(config, 1, 0);
    expect(vd.suggest(8, 0, Infinity)).toBe(8);
    expect(vd.suggest(8, 1, Infinity)).toBeNull();
    expect(vd.suggest(1e9, 2, Infinity)).toBe(1024);
    expect(vd.suggest(1e-9, 3, Infinity)).toBe(1 / 64);
    expect(vd.suggest(100, 4, 32)).toBe(32);
    // Not rounded to a power of two: the miner said what it wants.
    expect(vd.suggest(3, 5, Infinity)).toBe(3);
  });
});
