import { describe, expect, it } from 'vitest';
import {
  SlotAllocator,
  SlotsExhaustedError,
  slotHex,
  slotLayout,
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
