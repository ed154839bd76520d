import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SpentStoreBusyError } from '../../src/storage/errors.js';
import { SpentStore } from '../../src/tickets/spent-store.js';
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

// What every spent log does (exactly once, the log, pruning): test/storage/spent-log.test.ts.
describe('SpentStore (SQLite)', () => {
  it('creates the file, -wal and -shm 0600, whatever the umask', async () => {
    const old = process.umask(0);
    try {
      const store = SpentStore.open(file);
      await spend(store, 0);
      for (const path of [file, `${file}-wal`, `${file}-shm`]) expect(mode(path)).toBe(0o600);
      await store.close();
    } finally {
      process.umask(old);
    }
  });

  it('tightens an existing store file and its -wal/-shm to 0600', async () => {
    const store = SpentStore.open(file);
    await spend(store, 0);
    await store.close();
    // A clean close removes -wal; leave wide-open leftovers as an older run might have.
    writeFileSync(`${file}-wal`, '');
    for (const path of [file, `${file}-wal`]) chmodSync(path, 0o644);
    const again = SpentStore.open(file);
    await spend(again, 1);
    for (const path of [file, `${file}-wal`, `${file}-shm`]) expect(mode(path)).toBe(0o600);
    expect(await again.isSpent(serial(0))).toBe(true);
    await again.close();
  });

  it('leaves the file in WAL mode (synchronous = FULL is checked by open itself)', async () => {
    await SpentStore.open(file).close();
    const db = new Database(file, { readonly: true });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('user_version', { simple: true })).toBe(1);
    db.close();
  });

  it('refuses a path that would not be a durable file', () => {
    expect(() => SpentStore.open(':memory:')).toThrow(/plain file/);
    expect(() => SpentStore.open('')).toThrow(/plain file/);
    expect(() => SpentStore.open('file:spent?mode=memory')).toThrow(/plain file/);
  });

  it('gives up with SpentStoreBusyError when another writer holds the lock, recording nothing', async () => {
    const store = SpentStore.open(file, { busyTimeoutMs: 50 });
    const other = new Database(file);
    other.exec('BEGIN IMMEDIATE');
    await expect(spend(store, 0)).rejects.toThrow(SpentStoreBusyError);
    other.exec('ROLLBACK');
    other.close();
    expect(await store.isSpent(serial(0))).toBe(false);
    expect(await spend(store, 0)).toEqual({ spent: true, seq: 1 });
    await store.close();
  });

  it('threads and processes racing over the same serials: each is won exactly once', async () => {
    await SpentStore.open(file).close(); // create it once, so the racers only open it
    const serials = 1_500;
    const participants: Participant[] = [startThread(), startThread(), startProcess()];
    const setup = { mode: 'spend', file, serials, day: DAY } as const;
    try {
      const local = prepareRace(setup);
      const results = await race(participants, setup, local);
      await local.close();
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
      expect(await store.count()).toBe(serials);
      // Refusals take no sequence number: the log of a race is dense.
      expect((await store.since(0, 10_000)).map((r) => r.seq)).toEqual(
        Array.from({ length: serials }, (_, i) => i + 1),
      );
      await store.close();
    } finally {
      await Promise.all(participants.map((p) => p.stop()));
    }
  }, 60_000);
});
