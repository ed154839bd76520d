import { afterEach, describe, expect, it, vi } from 'vitest';
import { TokenBucket } from '../../src/lib/token-bucket.js';

/** A clock the test moves by hand (milliseconds). */
function manualClock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

function takeAll(bucket: TokenBucket, limit = 10_000): number {
  let taken = 0;
  while (taken < limit && bucket.take()) taken++;
  return taken;
}

describe('TokenBucket', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('starts full: a fresh sender may burst perSecond × burstSeconds requests at once', () => {
    const clock = manualClock();
    const bucket = new TokenBucket({ perSecond: 20, burstSeconds: 5, clock: clock.now });
    expect(takeAll(bucket)).toBe(100);
    expect(bucket.take()).toBe(false);
  });

  it('refills at the sustained rate, one whole token at a time', () => {
    const clock = manualClock();
    const bucket = new TokenBucket({ perSecond: 10, burstSeconds: 1, clock: clock.now });
    takeAll(bucket);
    clock.advance(50); // half a token
    expect(bucket.take()).toBe(false);
    clock.advance(50); // the other half
    expect(bucket.take()).toBe(true);
    expect(bucket.take()).toBe(false);
    clock.advance(1_000);
    expect(takeAll(bucket)).toBe(10);
  });

  it('saves up no more than the burst, however long the sender was quiet', () => {
    const clock = manualClock();
    const bucket = new TokenBucket({ perSecond: 10, burstSeconds: 2, clock: clock.now });
    takeAll(bucket);
    clock.advance(3_600_000);
    expect(takeAll(bucket)).toBe(20);
  });

  it('spends nothing on a refused request, so a sender hammering an empty bucket is not starved', () => {
    const clock = manualClock();
    const bucket = new TokenBucket({ perSecond: 10, burstSeconds: 1, clock: clock.now });
    takeAll(bucket);
    for (let i = 0; i < 50; i++) {
      expect(bucket.take()).toBe(false);
      clock.advance(1); // 50 ms in all: half a token
    }
    clock.advance(50);
    expect(bucket.take()).toBe(true);
  });

  it('says whether a token is there without spending it (has), refilling as take does', () => {
    const clock = manualClock();
    const bucket = new TokenBucket({ perSecond: 10, burstSeconds: 1, clock: clock.now });
    for (let i = 0; i < 20; i++) expect(bucket.has()).toBe(true);
    expect(takeAll(bucket)).toBe(10);
    expect(bucket.has()).toBe(false);
    clock.advance(100);
    expect(bucket.has()).toBe(true);
    expect(bucket.has(2)).toBe(false);
    expect(bucket.take()).toBe(true);
    expect(bucket.has()).toBe(false);
  });

  it('keeps a fractional burst: rate 20/s for 0.25 s holds 5 requests', () => {
    const clock = manualClock();
    const bucket = new TokenBucket({ perSecond: 20, burstSeconds: 0.25, clock: clock.now });
    expect(takeAll(bucket)).toBe(5);
  });

  it('follows Date.now when no clock is given', () => {
    vi.useFakeTimers({ now: 0 });
    const bucket = new TokenBucket({ perSecond: 4, burstSeconds: 1 });
    expect(takeAll(bucket)).toBe(4);
    vi.setSystemTime(250);
    expect(bucket.take()).toBe(true);
    expect(bucket.take()).toBe(false);
  });

  it('refuses a rate or burst that is not positive', () => {
    expect(() => new TokenBucket({ perSecond: 0, burstSeconds: 1 })).toThrow(RangeError);
    expect(() => new TokenBucket({ perSecond: 1, burstSeconds: -1 })).toThrow(RangeError);
    expect(() => new TokenBucket({ perSecond: Number.NaN, burstSeconds: 1 })).toThrow(RangeError);
  });
});
