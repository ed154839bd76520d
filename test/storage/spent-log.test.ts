import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { SpendRequest, SpentLog } from '../../src/storage/spent-log.js';
import { usePostgres } from '../helpers/postgres.js';
import { seededRandom } from '../helpers/seeded-random.js';
import { postgresEngine, sqliteEngine, type StoreEngine } from '../helpers/store-engines.js';

/**
 * The spent log's contract (src/storage/spent-log.ts), one suite for both engines: SQLite
 * files and a real PostgreSQL server. Exactly once, durable before it answers, and a log whose
 * cursor never skips a row, also with several connections (instances) writing at once.
 */

const DAY = 20_413;
const KEY_ID = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);

const postgres = usePostgres();

const serial = (i: number) =>
  new Uint8Array(createHash('sha256').update(`spent-log/${i}`).digest());
const request = (i: number, day = DAY, origin?: string): SpendRequest => ({
  serial: serial(i),
  keyId: KEY_ID,
  day,
  at: day * 86_400 + i,
  origin,
});
const spend = (store: SpentLog, i: number, day = DAY, origin?: string) =>
  store.trySpend(request(i, day, origin));
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

describe.each([sqliteEngine(), postgresEngine(postgres)])(
  '$name spent log',
  (engine: StoreEngine) => {
    beforeEach(() => engine.fresh());
    afterEach(() => engine.closeAll());

    it('records a serial once and refuses it after that', async () => {
      const store = await engine.openSpent();
      expect(await store.isSpent(serial(0))).toBe(false);
      expect(await spend(store, 0)).toEqual({ spent: true, seq: 1 });
      expect(await spend(store, 0)).toEqual({ spent: false });
      expect(await store.trySpend({ ...request(0), day: DAY + 1, at: 1 })).toEqual({
        spent: false,
      });
      expect(await store.isSpent(serial(0))).toBe(true);
      expect(await store.count()).toBe(1);
    });

    it('keeps spends across close and reopen, and continues the sequence', async () => {
      const first = await engine.openSpent();
      await spend(first, 0);
      await spend(first, 1);
      await first.close();
      const again = await engine.openSpent();
      expect(await again.isSpent(serial(0))).toBe(true);
      expect(await spend(again, 1)).toEqual({ spent: false });
      expect(await spend(again, 2)).toEqual({ spent: true, seq: 3 });
    });

    it('since returns the rows after a cursor in order, in pages', async () => {
      const store = await engine.openSpent();
      for (let i = 0; i < 5; i++) await spend(store, i, DAY, i % 2 ? 'backup-1' : undefined);
      await spend(store, 0); // refused: adds no row
      const all = await store.since(0);
      expect(all.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
      expect(all[1]).toEqual({
        seq: 2,
        serial: serial(1),
        keyId: KEY_ID,
        day: DAY,
        at: DAY * 86_400 + 1,
        origin: 'backup-1',
      });
      expect(all[0]?.origin).toBe('local');
      expect((await store.since(2, 2)).map((r) => r.seq)).toEqual([3, 4]);
      expect((await store.since(4, 2)).map((r) => r.seq)).toEqual([5]);
      expect(await store.since(5)).toEqual([]);
      // Our own redemptions only, for peers; the same record lookup finds.
      expect((await store.localSince(0)).map((r) => r.seq)).toEqual([1, 3, 5]);
      expect((await store.localSince(1, 1)).map((r) => r.seq)).toEqual([3]);
      expect(await store.lookup(serial(1))).toEqual(all[1]);
      expect(await store.lookup(serial(9))).toBeUndefined();
      expect(await store.head()).toBe(5);
      await expect(store.since(-1)).rejects.toThrow(RangeError);
      await expect(store.since(0, 0)).rejects.toThrow(RangeError);
      await expect(store.localSince(0, 10_001)).rejects.toThrow(RangeError);
    });

    it('prune removes old days, keeps the others, and never reuses a sequence number', async () => {
      const store = await engine.openSpent();
      await spend(store, 0, DAY - 3);
      await spend(store, 1, DAY - 2);
      await spend(store, 2, DAY - 1);
      await spend(store, 3, DAY);
      expect(await store.prune(DAY - 1)).toBe(2);
      expect(await store.isSpent(serial(0))).toBe(false);
      expect(await store.isSpent(serial(1))).toBe(false);
      expect(await store.isSpent(serial(2))).toBe(true);
      expect(await store.isSpent(serial(3))).toBe(true);
      // A cursor taken before pruning still reads on from where it was.
      expect((await store.since(1)).map((r) => r.seq)).toEqual([3, 4]);
      // Even with every row gone (the newest included), numbers go on rising.
      expect(await store.prune(DAY + 1)).toBe(2);
      expect(await store.count()).toBe(0);
      expect(await store.head()).toBe(4);
      expect(await spend(store, 4)).toEqual({ spent: true, seq: 5 });
      await store.close();
      const again = await engine.openSpent();
      expect(await spend(again, 5)).toEqual({ spent: true, seq: 6 });
      await expect(again.prune(1.5)).rejects.toThrow(/day/);
    });

    it('refuses bad input and stores it nowhere', async () => {
      const store = await engine.openSpent();
      const ok = request(0);
      await expect(store.trySpend({ ...ok, serial: new Uint8Array(31) })).rejects.toThrow(
        /32 bytes/,
      );
      await expect(store.trySpend({ ...ok, keyId: new Uint8Array(9) })).rejects.toThrow(/8 bytes/);
      await expect(store.trySpend({ ...ok, day: 1.5 })).rejects.toThrow(/day/);
      await expect(store.trySpend({ ...ok, at: -1 })).rejects.toThrow(/unix seconds/);
      await expect(store.trySpend({ ...ok, origin: '' })).rejects.toThrow(/origin/);
      await expect(store.trySpend({ ...ok, origin: 'x'.repeat(65) })).rejects.toThrow(/origin/);
      // One bad request fails its whole batch, the good ones in it included.
      await expect(store.trySpendMany([ok, { ...ok, day: -1 }])).rejects.toThrow(/day/);
      expect(await store.count()).toBe(0);
      expect(await store.head()).toBe(0);
    });

    it('group commit: a batch decides each serial once, in order, and takes no number for a refusal', async () => {
      const store = await engine.openSpent();
      await spend(store, 1);
      const results = await store.trySpendMany([request(2), request(1), request(2), request(3)]);
      expect(results).toEqual([
        { spent: true, seq: 2 },
        { spent: false },
        { spent: false },
        { spent: true, seq: 3 },
      ]);
      expect(await store.trySpendMany([])).toEqual([]);
      expect(await store.trySpendMany([request(1), request(3)])).toEqual([
        { spent: false },
        { spent: false },
      ]);
      expect(await store.head()).toBe(3);
    });

    it('two connections see each other at once: a spend is committed when it resolves', async () => {
      const a = await engine.openSpent();
      const b = await engine.openSpent();
      expect(await spend(a, 0)).toEqual({ spent: true, seq: 1 });
      expect(await spend(b, 0)).toEqual({ spent: false });
      expect(await b.isSpent(serial(0))).toBe(true);
      expect(await spend(b, 1)).toEqual({ spent: true, seq: 2 });
      expect((await a.since(1)).map((r) => r.seq)).toEqual([2]);
      expect((await a.lookup(serial(1)))?.origin).toBe('local');
    });

    it('1,000 concurrent spends of one serial through three connections: exactly one is spent', async () => {
      const stores = [await engine.openSpent(), await engine.openSpent(), await engine.openSpent()];
      // Some alone, some group-committed with others (the serial meets itself inside a batch).
      const outcomes = await Promise.all(
        Array.from({ length: 1_000 }, (_, i) => {
          const store = stores[i % 3] as SpentLog;
          return i % 2 === 0
            ? store.trySpend(request(7))
            : store.trySpendMany([request(7_000 + i), request(7)]).then((r) => r[1]);
        }),
      );
      expect(outcomes.filter((o) => o?.spent === true)).toHaveLength(1);
      expect(outcomes.filter((o) => o?.spent === false)).toHaveLength(999);
      expect(await stores[0]?.count()).toBe(501);
      expect((await stores[1]?.lookup(serial(7)))?.origin).toBe('local');
    });

    it('a reader never skips a row while several connections spend at once', async () => {
      const writers = [
        await engine.openSpent(),
        await engine.openSpent(),
        await engine.openSpent(),
      ];
      const reader = await engine.openSpent();
      const random = seededRandom(17);
      const batches = 60;
      let next = 0;
      let writing = true;
      // Each writer keeps up to 4 batches in flight, 1–20 serials each: commits overlap.
      const write = async (store: SpentLog) => {
        const inFlight: Promise<unknown>[] = [];
        for (let b = 0; b < batches; b++) {
          const size = 1 + Math.floor(random() * 20);
          inFlight.push(store.trySpendMany(Array.from({ length: size }, () => request(next++))));
          if (inFlight.length >= 4) await inFlight.shift();
        }
        await Promise.all(inFlight);
      };
      const seen: number[] = [];
      const seenSerials = new Set<string>();
      let cursor = 0;
      const pull = async () => {
        for (;;) {
          const page = await reader.since(cursor, 7);
          for (const row of page) {
            seen.push(row.seq);
            seenSerials.add(hex(row.serial));
          }
          const last = page.at(-1);
          if (!last) return;
          cursor = last.seq;
        }
      };
      const reading = (async () => {
        while (writing) {
          await pull();
          await new Promise((resolve) => setImmediate(resolve));
        }
      })();
      await Promise.all(writers.map(write));
      writing = false;
      await reading;
      await pull();
      // Every spend was read exactly once, in increasing order: none slipped behind the cursor.
      expect(seenSerials.size).toBe(next);
      expect(seen).toHaveLength(next);
      expect(seen.every((seq, i) => i === 0 || seq > (seen[i - 1] as number))).toBe(true);
      expect(await reader.count()).toBe(next);
      expect(await reader.head()).toBeGreaterThanOrEqual(seen.at(-1) ?? 0);
    });
  },
);
