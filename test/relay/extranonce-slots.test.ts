import { describe, expect, it } from 'vitest';
import {
  MAX_SLOTS,
  SlotAllocator,
  SlotsExhaustedError,
  slotHex,
  slotLayout,
  slotShares,
} from '../../src/relay/extranonce-slots.js';

describe('slotLayout', () => {
  it('reserves fixed-width slots from the upstream extranonce2', () => {
    expect(slotLayout(8)).toEqual({ slotBytes: 2, clientExtranonce2Size: 6, capacity: 65536 });
    expect(slotLayout(4)).toEqual({ slotBytes: 2, clientExtranonce2Size: 2, capacity: 65536 });
    expect(slotLayout(3)).toEqual({ slotBytes: 1, clientExtranonce2Size: 2, capacity: 256 });
    expect(slotLayout(2)).toEqual({ slotBytes: 1, clientExtranonce2Size: 1, capacity: 256 });
    expect(slotLayout(1)).toBeNull();
    expect(slotLayout(0)).toBeNull();
  });
});

describe('SlotAllocator', () => {
  it('never hands out a slot twice while it is held', () => {
    const slots = new SlotAllocator(256);
    const held = new Set<number>();
    for (let i = 0; i < 256; i++) {
      const slot = slots.allocate();
      expect(held.has(slot)).toBe(false);
      expect(slot).toBeGreaterThanOrEqual(0);
      expect(slot).toBeLessThan(256);
      held.add(slot);
    }
    expect(() => slots.allocate()).toThrow(SlotsExhaustedError);
    slots.release(17);
    expect(slots.allocate()).toBe(17);
  });

  it('reuses a released slot last', () => {
    const slots = new SlotAllocator(4);
    const a = slots.allocate();
    slots.release(a);
    expect(slots.allocate()).not.toBe(a);
  });

  it('resize evicts slots that no longer fit and keeps the rest', () => {
    const slots = new SlotAllocator(65536);
    for (let i = 0; i < 300; i++) slots.allocate();
    const evicted = slots.resize(256);
    expect(evicted).toHaveLength(44);
    expect(evicted.every((s) => s >= 256)).toBe(true);
    expect(slots.size).toBe(256);
    expect(() => slots.allocate()).toThrow(SlotsExhaustedError);
  });

  it('slot hex is fixed width', () => {
    expect(slotHex(1, 2)).toBe('0001');
    expect(slotHex(255, 1)).toBe('ff');
    expect(slotHex(0xabcd, 2)).toBe('abcd');
  });
});

describe('slotShares', () => {
  it('gives each port its maximum when both fit in the slots', () => {
    expect(slotShares(MAX_SLOTS, { circuit: 10_000, stratum: 1_000 })).toEqual({
      circuit: 10_000,
      stratum: 1_000,
    });
    expect(slotShares(256, { circuit: 200, stratum: 56 })).toEqual({ circuit: 200, stratum: 56 });
  });

  it('splits a smaller slot space in proportion, never more than the slots, at least one each', () => {
    // A one-byte layout: 256 slots for 10,000 + 1,000 wanted.
    const split = slotShares(256, { circuit: 10_000, stratum: 1_000 });
    expect(split).toEqual({ circuit: 233, stratum: 23 });
    expect(split.circuit + split.stratum).toBeLessThanOrEqual(256);
    expect(slotShares(256, { circuit: 65_000, stratum: 10 })).toEqual({ circuit: 255, stratum: 1 });
    expect(slotShares(256, { circuit: 10, stratum: 65_000 })).toEqual({ circuit: 1, stratum: 255 });
  });
});
