import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SpentStore, SpentStoreBusyError } from '../../src/tickets/spent-store.js';
import {
  type Participant,
  prepareRace,
  race,
  raceSerial,
  startProcess,
  startThread,
} from '../helpers/spend-race.js';

const DAY = 20_413;
const KEY_ID = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);

let dir: string;
let file: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'powbridge-spent-'));
  file = join(dir, 'spent.sqlite');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const serial = (i: number) => raceSerial(1_000_000 + i);
const spend = (store: SpentStore, i: number, day = DAY, origin?: string) =>
  store.trySpend({ serial: serial(i), keyId: KEY_ID, day, at: day * 86_400 + i, origin });
const mode = (path: string) => statSync(path).mode & 0o777;

describe('SpentStore', () => {
  it('records a serial once and refuses it after that', () => {
    const store = SpentStore.open(file);
    expect(store.isSpent(serial(0))).toBe(false);
    expect(spend(store, 0)).toEqual({ spent: true, seq: 1 });
    expect(spend(store, 0)).toEqual({ spent: false });
    expect(store.trySpend({ serial: serial(0), keyId: KEY_ID, day: DAY + 1, at: 1 })).toEqual({
      spent: false,
    });
    expect(store.isSpent(serial(0))).toBe(true);
    expect(store.count()).toBe(1);
    store.close();
  });

  it('keeps spends across close and reopen, and continues the sequence', () => {
    const first = SpentStore.open(file);
    spend(first, 0);
    spend(first, 1);
    first.close();
    const again = SpentStore.open(file);
    expect(again.isSpent(serial(0))).toBe(true);
    expect(spend(again, 1)).toEqual({ spent: false });
    expect(spend(again, 2)).toEqual({ spent: true, seq: 3 });
    again.close();
  });

  it('since returns the rows after a cursor in order, in pages', () => {
    const store = SpentStore.open(file);
    for (let i = 0; i < 5; i++) spend(store, i, DAY, i % 2 ? 'backup-1' : undefined);
    spend(store, 0); // refused: adds no row
    const all = store.since(0);
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
    expect(store.since(2, 2).map((r) => r.seq)).toEqual([3, 4]);
    expect(store.since(4, 2).map((r) => r.seq)).toEqual([5]);
    expect(store.since(5)).toEqual([]);
    expect(() => store.since(-1)).toThrow(RangeError);
    expect(() => store.since(0, 0)).toThrow(RangeError);
    store.close();
  });

  it('prune removes old days, keeps the others, and never reuses a sequence number', () => {
    const store = SpentStore.open(file);
    spend(store, 0, DAY - 3);
    spend(store, 1, DAY - 2);
    spend(store, 2, DAY - 1);
    spend(store, 3, DAY);
    expect(store.prune(DAY - 1)).toBe(2);
    expect(store.isSpent(serial(0))).toBe(false);
    expect(store.isSpent(serial(1))).toBe(false);
    expect(store.isSpent(serial(2))).toBe(true);
    expect(store.isSpent(serial(3))).toBe(true);
    // A cursor taken before pruning still reads on from where it was.
    expect(store.since(1).map((r) => r.seq)).toEqual([3, 4]);
    // Even with every row gone (the newest included), numbers go on rising.
    expect(store.prune(DAY + 1)).toBe(2);
    expect(store.count()).toBe(0);
    expect(spend(store, 4)).toEqual({ spent: true, seq: 5 });
    store.close();
    const again = SpentStore.open(file);
    expect(spend(again, 5)).toEqual({ spent: true, seq: 6 });
    again.close();
  });

  it('creates the file, -wal and -shm 0600, whatever the umask', () => {
    const old = process.umask(0);
    try {
      const store = SpentStore.open(file);
      spend(store, 0);
      for (const path of [file, `${file}-wal`, `${file}-shm`]) expect(mode(path)).toBe(0o600);
      store.close();
    } finally {
      process.umask(old);
    }
  });

  it('tightens an existing store file and its -wal/-shm to 0600', () => {
    const store = SpentStore.open(file);
    spend(store, 0);
    store.close();
    // A clean close removes -wal; leave wide-open leftovers as an older run might have.
    writeFileSync(`${file}-wal`, '');
    for (const path of [file, `${file}-wal`]) chmodSync(path, 0o644);
    const again = SpentStore.open(file);
    spend(again, 1);
    for (const path of [file, `${file}-wal`, `${file}-shm`]) expect(mode(path)).toBe(0o600);
    expect(again.isSpent(serial(0))).toBe(true);
    again.close();
  });

  it('leaves the file in WAL mode (synchronous = FULL is checked by open itself)', () => {
    SpentStore.open(file).close();
    const db = new Database(file, { readonly: true });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('user_version', { simple: true })).toBe(1);
    db.close();
  });

  it('refuses bad input and stores it nowhere', () => {
    expect(() => SpentStore.open(':memory:')).toThrow(/plain file/);
    const store = SpentStore.open(file);
    const ok = { serial: serial(0), keyId: KEY_ID, day: DAY, at: 1 };
    expect(() => store.trySpend({ ...ok, serial: new Uint8Array(31) })).toThrow(/32 bytes/);
    expect(() => store.trySpend({ ...ok, keyId: new Uint8Array(9) })).toThrow(/8 bytes/);
    expect(() => store.trySpend({ ...ok, day: 1.5 })).toThrow(/day/);
    expect(() => store.trySpend({ ...ok, at: -1 })).toThrow(/unix seconds/);
    expect(() => store.trySpend({ ...ok, origin: '' })).toThrow(/origin/);
    expect(() => store.trySpend({ ...ok, origin: 'x'.repeat(65) })).toThrow(/origin/);
    expect(store.count()).toBe(0);
    store.close();
  });

  it('gives up with SpentStoreBusyError when another writer holds the lock, recording nothing', () => {
    const store = SpentStore.open(file, { busyTimeoutMs: 50 });
    const other = new Database(file);
    other.exec('BEGIN IMMEDIATE');
    expect(() => spend(store, 0)).toThrow(SpentStoreBusyError);
    other.exec('ROLLBACK');
    other.close();
    expect(store.isSpent(serial(0))).toBe(false);
    expect(spend(store, 0)).toEqual({ spent: true, seq: 1 });
    store.close();
  });

  it('two connections in one process see each other at once', () => {
    const a = SpentStore.open(file);
    const b = SpentStore.open(file);
    expect(spend(a, 0)).toEqual({ spent: true, seq: 1 });
    expect(spend(b, 0)).toEqual({ spent: false });
    expect(b.isSpent(serial(0))).toBe(true);
    expect(spend(b, 1)).toEqual({ spent: true, seq: 2 });
    expect(a.since(1).map((r) => r.seq)).toEqual([2]);
    a.close();
    b.close();
  });

  it('threads and processes racing over the same serials: each is won exactly once', async () => {
    SpentStore.open(file).close(); // create it once, so the racers only open it
    const serials = 1_500;
    const participants: Participant[] = [startThread(), startThread(), startProcess()];
    const setup = { mode: 'spend', file, serials, day: DAY } as const;
    try {
      const local = prepareRace(setup);
      const results = await race(participants, setup, local);
      local.close();
      const winners = new Map<number, number>();
      results.forEach((r) => r.won.forEach((i) => winners.set(i, (winners.get(i) ?? 0) + 1)));
      expect(winners.size).toBe(serials);
      expect([...winners.values()].every((n) => n === 1)).toBe(true);
      for (const r of results) expect(r.won.length + (r.refused.spent ?? 0)).toBe(serials);
      // They really raced: all of them were at it at once. (Who wins how many is up to
      // SQLite's busy handler, which sleeps the waiting writers with back-off: one writer
      // often takes nearly all, so that is not asserted.)
      expect(Math.max(...results.map((r) => r.startedAt))).toBeLessThan(
        Math.min(...results.map((r) => r.endedAt)),
      );
      const store = SpentStore.open(file);
      expect(store.count()).toBe(serials);
      // Refusals take no sequence number: the log of a race is dense.
      expect(store.since(0, 10_000).map((r) => r.seq)).toEqual(
        Array.from({ length: serials }, (_, i) => i + 1),
      );
      store.close();
    } finally {
      await Promise.all(participants.map((p) => p.stop()));
    }
  }, 60_000);
});
