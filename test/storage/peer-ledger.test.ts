import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type PeerLedger,
  serialsDigest,
  type ServedTicket,
} from '../../src/storage/peer-ledger.js';
import { usePostgres } from '../helpers/postgres.js';
import { postgresEngine, sqliteEngine, type StoreEngine } from '../helpers/store-engines.js';

/**
 * The peer ledger's contract (src/storage/peer-ledger.ts), one suite for both engines: the
 * SQLite `peers.sqlite` of a single relay and the PostgreSQL tables a family shares. Bills,
 * settlements, conflicts and cursors as Protocol 2 needs them (docs/design.md §7), kept across
 * a reopen, and exact when two instances write at once.
 */

const DAY = 20_413;
const AT = DAY * 86_400;
const KEY_ID = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);

const postgres = usePostgres();

const serial = (i: number) =>
  new Uint8Array(createHash('sha256').update(`peer-ledger/${i}`).digest());
const served = (i: number, offline = false): ServedTicket => ({
  serial: serial(i),
  keyId: KEY_ID,
  day: DAY,
  seq: i + 1,
  at: AT + i,
  offline,
});
let ids = 0;
const newId = () => `id-${++ids}`;
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

/** The peer billed us `count` of our tickets (request `id`). */
const billUs = (ledger: PeerLedger, id: string, count: number, serials: Uint8Array[] = []) =>
  ledger.recordRequestIn(
    'r2',
    { id, count, digest: serialsDigest(serials), period: { from: AT, to: AT + 9 } },
    0,
    AT + 10,
    serials,
  );

describe.each([sqliteEngine(), postgresEngine(postgres)])(
  '$name peer ledger',
  (engine: StoreEngine) => {
    beforeEach(() => engine.fresh());
    afterEach(() => engine.closeAll());

    it('moves replication cursors forward only, and reads a rebuilt log again', async () => {
      const ledger = await engine.openLedger();
      expect(await ledger.pulled('r2')).toBe(0);
      await ledger.setPulled('r2', 7);
      await ledger.setPulled('r2', 3);
      await ledger.setAcked('r2', 5);
      await ledger.setAcked('r2', 2);
      expect(await ledger.pulled('r2')).toBe(7);
      expect(await ledger.balance('r2')).toMatchObject({ pulled: 7, acked: 5 });
      await ledger.resetPulled('r2');
      expect(await ledger.balance('r2')).toMatchObject({ pulled: 0, acked: 5 });
      expect(await ledger.pulled('r3')).toBe(0);
    });

    it('bills every paymentEvery served tickets, in the same write as the one that completes a bill', async () => {
      const ledger = await engine.openLedger();
      expect(await ledger.recordServed('r2', served(0), 3, newId)).toBeNull();
      expect(await ledger.recordServed('r2', served(1, true), 3, newId)).toBeNull();
      // The same serial again (a retried record) counts once.
      expect(await ledger.recordServed('r2', served(1, true), 3, newId)).toBeNull();
      const bill = await ledger.recordServed('r2', served(2), 3, newId);
      expect(bill).toMatchObject({ count: 3, period: { from: AT, to: AT + 2 } });
      expect(bill?.digest).toBe(serialsDigest([serial(2), serial(0), serial(1)]));
      expect(bill?.serials.map((s) => hex(s.serial))).toEqual([0, 1, 2].map((i) => hex(serial(i))));
      expect(bill?.serials[0]).toMatchObject({ keyId: KEY_ID, day: DAY });
      expect(await ledger.recordServed('r2', served(3), 3, newId)).toBeNull();
      expect(await ledger.balance('r2')).toMatchObject({
        served: 4,
        unbilled: 1,
        billed: 3,
        unpaidToUs: 3,
        owedSync: 1,
        pendingRequests: 1,
      });
      expect(await ledger.unpaidToUs('r2')).toBe(3);

      const [pending, ...none] = await ledger.undeliveredRequests('r2');
      expect(none).toEqual([]);
      expect(pending).toEqual(bill);
      await ledger.markRequestDelivered(bill?.id ?? '', AT + 20);
      expect(await ledger.undeliveredRequests('r2')).toEqual([]);
      // The peer pulled our log past the offline ticket's seq: nothing left to sync.
      await ledger.setAcked('r2', 2);
      expect(await ledger.balance('r2')).toMatchObject({ pendingRequests: 0, owedSync: 0 });
    });

    it('records bills to us once and settlements up to what we owe', async () => {
      const ledger = await engine.openLedger();
      await expect(ledger.recordPaid('r2', newId(), 1, 'operator', AT)).rejects.toThrow(
        /we owe r2 0 tickets/,
      );
      expect(await billUs(ledger, 'in-1', 3)).toBe(true);
      expect(await billUs(ledger, 'in-1', 3)).toBe(false);
      expect(await billUs(ledger, 'in-2', 2)).toBe(true);
      expect(await ledger.listRequestsIn('r2')).toMatchObject([
        { id: 'in-1', count: 3, receivedAt: AT + 10 },
        { id: 'in-2', count: 2 },
      ]);
      expect(await ledger.balance('r2')).toMatchObject({ billedToUs: 5, weOwe: 5 });

      await expect(ledger.recordPaid('r2', newId(), 6, 'operator', AT)).rejects.toThrow(
        /we owe r2 5 tickets; refusing to settle 6/,
      );
      await expect(ledger.recordPaid('r2', newId(), 1, 'work', AT)).rejects.toThrow(/exactly/);
      await expect(ledger.recordPaid('r2', newId(), 2, 'operator', AT, ['t'])).rejects.toThrow(
        /exactly/,
      );
      await ledger.recordPaid('r2', 'op-1', 2, 'operator', AT + 1);
      await ledger.recordPaid('r2', 'work-1', 2, 'work', AT + 2, ['t1', 't2']);
      expect(await ledger.undeliveredSettlements('r2')).toEqual([
        { id: 'op-1', count: 2, method: 'operator', at: AT + 1 },
        { id: 'work-1', count: 2, method: 'work', at: AT + 2, tickets: ['t1', 't2'] },
      ]);
      expect(await ledger.balance('r2')).toMatchObject({
        settledByUs: 4,
        weOwe: 1,
        pendingSettlements: 2,
      });

      // The creditor took one of the two work tickets, and none of a later one.
      await ledger.settlementDelivered('r2', 'op-1', 2, AT + 3);
      await ledger.settlementDelivered('r2', 'work-1', 1, AT + 3);
      expect(await ledger.undeliveredSettlements('r2')).toEqual([]);
      expect(await ledger.balance('r2')).toMatchObject({ settledByUs: 3, weOwe: 2 });
      await ledger.recordPaid('r2', 'work-2', 1, 'work', AT + 4, ['t3']);
      await ledger.settlementDelivered('r2', 'work-2', 0, AT + 5);
      expect(await ledger.balance('r2')).toMatchObject({
        settledByUs: 3,
        weOwe: 2,
        pendingSettlements: 0,
      });
    });

    it('records settlements from the peer once, and answers a retry with the first count', async () => {
      const ledger = await engine.openLedger();
      for (let i = 0; i < 2; i++) await ledger.recordServed('r2', served(i), 2, newId);
      expect(await ledger.receivedSettlement('r2', 's-1')).toBeUndefined();
      expect(await ledger.recordReceived('r2', 's-1', 1, 'work', AT + 5)).toBe(true);
      expect(await ledger.recordReceived('r2', 's-1', 2, 'work', AT + 6)).toBe(false);
      expect(await ledger.receivedSettlement('r2', 's-1')).toBe(1);
      expect(await ledger.balance('r2')).toMatchObject({
        billed: 2,
        settledToUs: 1,
        unpaidToUs: 1,
      });
      expect(await ledger.unpaidToUs('r2')).toBe(1);
    });

    it('bills neither side for a double spend, whether found before or after the bill', async () => {
      const ledger = await engine.openLedger();
      const conflict = (i: number) => ({
        serial: serial(i),
        keyId: KEY_ID,
        day: DAY,
        oursAt: AT + i,
        theirsAt: AT + i + 1,
      });
      // Creditor: ticket 0 is known as a conflict before billing, ticket 2 only after.
      await ledger.recordServed('r2', served(0), 2, newId);
      expect(await ledger.recordConflict('r2', conflict(0), AT + 50)).toBe(true);
      expect(await ledger.recordConflict('r2', conflict(0), AT + 51)).toBe(false);
      expect(await ledger.recordServed('r2', served(1), 2, newId)).toBeNull();
      const bill = await ledger.recordServed('r2', served(2), 2, newId);
      expect(bill?.serials.map((s) => hex(s.serial))).toEqual([hex(serial(1)), hex(serial(2))]);
      await ledger.recordConflict('r2', conflict(2), AT + 52);
      expect(await ledger.balance('r2')).toMatchObject({
        served: 3,
        unbilled: 0,
        billed: 1,
        unpaidToUs: 1,
        conflicts: 2,
        conflictsNotBilled: 2,
      });
      expect((await ledger.conflicts('r2')).map((c) => [hex(c.serial), c.detectedAt])).toEqual([
        [hex(serial(0)), AT + 50],
        [hex(serial(2)), AT + 52],
      ]);

      // Debtor: the peer bills us for 3 serials, one of which we redeemed too.
      const ours = [serial(10), serial(11), serial(12)];
      await ledger.recordConflict('r3', { ...conflict(11), serial: serial(11) }, AT + 60);
      await ledger.recordRequestIn(
        'r3',
        { id: 'in-3', count: 3, digest: serialsDigest(ours), period: { from: AT, to: AT } },
        0,
        AT + 61,
        ours,
      );
      expect(await ledger.balance('r3')).toMatchObject({
        billedToUs: 2,
        weOwe: 2,
        conflictsNotOwed: 1,
      });
    });

    it('keeps everything across a reopen, as a restart or another instance sees it', async () => {
      const first = await engine.openLedger();
      await first.setPulled('r2', 4);
      await first.recordServed('r2', served(0, true), 1, newId);
      await billUs(first, 'in-1', 2);
      await first.recordPaid('r2', 'p-1', 1, 'operator', AT);
      const before = await first.balance('r2');
      await first.close();
      const again = await engine.openLedger();
      expect(await again.balance('r2')).toEqual(before);
      expect(before).toMatchObject({ pulled: 4, billed: 1, weOwe: 1, pendingSettlements: 1 });
    });

    it('bills each ticket once when two instances serve the same peer at once', async () => {
      const one = await engine.openLedger();
      const two = await engine.openLedger();
      const every = 5;
      const bills = (
        await Promise.all(
          Array.from({ length: 40 }, (_, i) =>
            (i % 2 === 0 ? one : two).recordServed('r2', served(i), every, newId),
          ),
        )
      ).filter((bill) => bill !== null);
      expect(bills.map((b) => b.count)).toEqual(Array<number>(8).fill(every));
      const billed = bills.flatMap((b) => b.serials.map((s) => hex(s.serial)));
      expect(new Set(billed).size).toBe(40);
      expect(await one.balance('r2')).toMatchObject({ served: 40, billed: 40, unbilled: 0 });
    });

    it('lets only one of two settles at once record what we owe', async () => {
      const one = await engine.openLedger();
      const two = await engine.openLedger();
      await billUs(one, 'in-1', 3);
      const results = await Promise.allSettled([
        one.recordPaid('r2', 'a', 3, 'operator', AT),
        two.recordPaid('r2', 'b', 3, 'operator', AT),
      ]);
      expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
      expect(await two.balance('r2')).toMatchObject({ settledByUs: 3, weOwe: 0 });
    });

    it('refuses bad input before writing anything', async () => {
      const ledger = await engine.openLedger();
      await expect(
        ledger.recordServed('r2', { ...served(0), serial: new Uint8Array(31) }, 1, newId),
      ).rejects.toThrow(RangeError);
      await expect(
        ledger.recordServed('r2', { ...served(0), keyId: new Uint8Array(9) }, 1, newId),
      ).rejects.toThrow(RangeError);
      await expect(ledger.recordServed('r2', served(0), 0, newId)).rejects.toThrow(/paymentEvery/);
      await expect(ledger.recordServed('', served(0), 1, newId)).rejects.toThrow(/bad peer/);
      await expect(ledger.setPulled('r2', -1)).rejects.toThrow(/bad cursor/);
      await expect(ledger.setAcked('r2', 1.5)).rejects.toThrow(/bad cursor/);
      await expect(billUs(ledger, 'x'.repeat(65), 1)).rejects.toThrow(/bad id/);
      await expect(ledger.recordReceived('r2', 's', -1, 'operator', AT)).rejects.toThrow(
        /bad count/,
      );
      expect(await ledger.balance('r2')).toMatchObject({ served: 0, billedToUs: 0, pulled: 0 });
      expect(await ledger.receivedSettlement('r2', 's')).toBeUndefined();
    });
  },
);
