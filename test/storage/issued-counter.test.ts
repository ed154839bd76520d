import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type IssuedCount,
  IssuedCounter,
  type IssuedCountStorage,
} from '../../src/storage/issued-counter.js';
import { usePostgres } from '../helpers/postgres.js';
import { postgresEngine, sqliteEngine, type StoreEngine } from '../helpers/store-engines.js';

/**
 * Issued-ticket counts (src/storage/issued-counter.ts), one suite for both engines: per
 * (day, key, scheme), the family's count is the sum of what its instances add, and it survives
 * a restart; and the counter in front of them, which never holds up issuance and keeps the
 * counts of a failed write for the next one.
 */

const DAY = 20_413;
const KEY = '0102030405060708';
const RSA_KEY = 'f0f1f2f3f4f5f6f7';

const postgres = usePostgres();

const total = (rows: IssuedCount[]) => rows.reduce((sum, r) => sum + r.count, 0);

describe.each([sqliteEngine(), postgresEngine(postgres)])(
  '$name issued counts',
  (engine: StoreEngine) => {
    beforeEach(() => engine.fresh());
    afterEach(() => engine.closeAll());

    it('adds per (day, key, scheme)', async () => {
      const store = await engine.openIssuedCounts();
      await store.add([
        { day: DAY, keyId: KEY, scheme: 'ao', count: 2 },
        { day: DAY, keyId: RSA_KEY, scheme: 'rsa', count: 1 },
        { day: DAY + 1, keyId: KEY, scheme: 'ao', count: 5 },
      ]);
      await store.add([{ day: DAY, keyId: KEY, scheme: 'ao', count: 3 }]);
      expect(await store.day(DAY)).toEqual([
        { day: DAY, keyId: KEY, scheme: 'ao', count: 5 },
        { day: DAY, keyId: RSA_KEY, scheme: 'rsa', count: 1 },
      ]);
      expect(await store.day(DAY - 1)).toEqual([]);
    });

    it('two instances issuing: the family count is the sum, and survives a restart', async () => {
      const aStore = await engine.openIssuedCounts();
      const a = new IssuedCounter(aStore);
      const bStore = await engine.openIssuedCounts();
      const b = new IssuedCounter(bStore);
      for (let i = 0; i < 7; i++) a.count(DAY, KEY, 'ao');
      for (let i = 0; i < 4; i++) b.count(DAY, KEY, 'ao');
      b.count(DAY, RSA_KEY, 'rsa');
      await Promise.all([a.flush(), b.flush()]);
      await a.refresh(DAY);
      expect(a.today(DAY)).toEqual({ here: 7, family: 12 });
      expect(b.today(DAY)).toEqual({ here: 5, family: null });
      await Promise.all([a.close(), b.close()]);
      await Promise.all([aStore.close(), bStore.close()]);
      // A restart: new connections to the same place.
      const again = new IssuedCounter(await engine.openIssuedCounts());
      expect(again.today(DAY)).toEqual({ here: 0, family: null });
      await again.refresh(DAY);
      expect(again.today(DAY)).toEqual({ here: 0, family: 12 });
      again.count(DAY, KEY, 'ao');
      expect(again.today(DAY)).toEqual({ here: 1, family: 13 });
      await again.flush();
      expect(total(await (await engine.openIssuedCounts()).day(DAY))).toBe(13);
    });

    it('refuses a malformed count', async () => {
      const store = await engine.openIssuedCounts();
      await expect(store.add([{ day: DAY, keyId: 'xy', scheme: 'ao', count: 1 }])).rejects.toThrow(
        /keyId/,
      );
      await expect(store.add([{ day: DAY, keyId: KEY, scheme: 'ao', count: -1 }])).rejects.toThrow(
        /count/,
      );
      expect(await store.day(DAY)).toEqual([]);
    });
  },
);

/** Storage that fails until told otherwise, remembering what it was given. */
class FlakyCounts implements IssuedCountStorage {
  failing = true;
  readonly added: IssuedCount[] = [];
  add(counts: readonly IssuedCount[]): Promise<void> {
    if (this.failing) return Promise.reject(new Error('database down'));
    this.added.push(...counts.map((c) => ({ ...c })));
    return Promise.resolve();
  }
  day(day: number): Promise<IssuedCount[]> {
    return Promise.resolve(this.added.filter((c) => c.day === day));
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

describe('IssuedCounter', () => {
  it('counting is synchronous and batched: one write for many tickets', async () => {
    const store = new FlakyCounts();
    store.failing = false;
    const counter = new IssuedCounter(store, { flushMs: 60_000 });
    for (let i = 0; i < 100; i++) counter.count(DAY, KEY, 'ao');
    expect(counter.today(DAY).here).toBe(100);
    expect(store.added).toEqual([]);
    await counter.close();
    expect(store.added).toEqual([{ day: DAY, keyId: KEY, scheme: 'ao', count: 100 }]);
  });

  it('a failed write is reported once and its counts go into the next one', async () => {
    const store = new FlakyCounts();
    const errors: unknown[] = [];
    const counter = new IssuedCounter(store, { flushMs: 60_000, onError: (e) => errors.push(e) });
    counter.count(DAY, KEY, 'ao');
    await counter.flush();
    counter.count(DAY, KEY, 'ao');
    await counter.flush();
    expect(errors).toHaveLength(1);
    expect(store.added).toEqual([]);
    store.failing = false;
    counter.count(DAY, KEY, 'ao');
    await counter.close();
    expect(store.added).toEqual([{ day: DAY, keyId: KEY, scheme: 'ao', count: 3 }]);
    expect(counter.today(DAY).here).toBe(3);
  });
});
