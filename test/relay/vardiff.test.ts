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
