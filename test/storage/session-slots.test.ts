import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { SessionSlots, SlotRequest } from '../../src/storage/session-slots.js';
import { usePostgres } from '../helpers/postgres.js';
import { postgresEngine, sqliteEngine, type StoreEngine } from '../helpers/store-engines.js';

/**
 * AO session slots (src/storage/session-slots.ts, docs/design.md §6.2), one suite for a single
 * relay's memory and a family's PostgreSQL: at most K unexpired slots per (key, day), freed by
 * release or by expiry on the caller's clock, and never more than K however many ask at once.
 */

const KEY = '0102030405060708';
const OTHER_KEY = 'a1a2a3a4a5a6a7a8';
const DAY = 20_413;
const T0 = DAY * 86_400 + 1_000;

const postgres = usePostgres();

const ask = (over: Partial<SlotRequest> = {}): SlotRequest => ({
  keyId: KEY,
  day: DAY,
  limit: 2,
  now: T0,
  expiresAt: T0 + 15,
  ...over,
});

describe.each([sqliteEngine(), postgresEngine(postgres)])(
  '$name session slots',
  (engine: StoreEngine) => {
    beforeEach(() => engine.fresh());
    afterEach(() => engine.closeAll());

    it('hands out K slots per (key, day), then null until one is released', async () => {
      const slots = await engine.openSlots();
      const first = await slots.acquire(ask());
      const second = await slots.acquire(ask());
      expect(first).not.toBeNull();
      expect(second).not.toBeNull();
      expect(second?.id).not.toBe(first?.id);
      expect(await slots.acquire(ask())).toBeNull();
      expect(await slots.held(KEY, DAY, T0)).toBe(2);
      // Another key, or another day, has slots of its own.
      expect(await slots.acquire(ask({ keyId: OTHER_KEY }))).not.toBeNull();
      expect(await slots.acquire(ask({ day: DAY + 1 }))).not.toBeNull();
      if (!first) throw new Error('no slot');
      await slots.release(first);
      await slots.release(first); // twice: nothing more happens
      expect(await slots.held(KEY, DAY, T0)).toBe(1);
      expect(await slots.acquire(ask())).toMatchObject({
        keyId: KEY,
        day: DAY,
        expiresAt: T0 + 15,
      });
      expect(await slots.acquire(ask())).toBeNull();
    });

    it('an expired slot is free on the clock of the one asking', async () => {
      const slots = await engine.openSlots();
      await slots.acquire(ask({ expiresAt: T0 + 10 }));
      await slots.acquire(ask({ expiresAt: T0 + 20 }));
      expect(await slots.acquire(ask({ now: T0 + 9.9, expiresAt: T0 + 30 }))).toBeNull();
      expect(await slots.held(KEY, DAY, T0 + 10)).toBe(1);
      expect(await slots.acquire(ask({ now: T0 + 10, expiresAt: T0 + 30 }))).not.toBeNull();
      expect(await slots.acquire(ask({ now: T0 + 10, expiresAt: T0 + 30 }))).toBeNull();
      expect(await slots.expire(T0 + 25)).toBe(1);
      expect(await slots.held(KEY, DAY, T0 + 25)).toBe(1);
    });

    it('never more than K held when many ask at once, from several connections', async () => {
      const instances = [
        await engine.openSlots(),
        await engine.openSlots(),
        await engine.openSlots(),
      ];
      const leases = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          (instances[i % 3] as SessionSlots).acquire(ask({ limit: 3 })),
        ),
      );
      expect(leases.filter((l) => l !== null)).toHaveLength(3);
      expect(await (instances[0] as SessionSlots).held(KEY, DAY, T0)).toBe(3);
    });

    it('refuses a malformed request', async () => {
      const slots = await engine.openSlots();
      await expect(slots.acquire(ask({ keyId: 'zz' }))).rejects.toThrow(/keyId/);
      await expect(slots.acquire(ask({ limit: 0 }))).rejects.toThrow(/limit/);
      await expect(slots.acquire(ask({ expiresAt: T0 }))).rejects.toThrow(/expiresAt/);
      await expect(slots.acquire(ask({ day: -1 }))).rejects.toThrow(/day/);
    });
  },
);
