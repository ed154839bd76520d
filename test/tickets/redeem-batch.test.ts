import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RpcErrorCode } from '../../src/protocol/errors.js';
import { encodePoint } from '../../src/tickets/group.js';
import { utcDay } from '../../src/tickets/keyring.js';
import { Redeemer } from '../../src/tickets/redeemer.js';
import { generateSignerKey } from '../../src/tickets/scheme.js';
import { SpentStore } from '../../src/tickets/spent-store.js';
import { acceptingKeyring, csprng, issueTicket } from '../helpers/ticket-issue.js';

const dirs: string[] = [];
const stores: SpentStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'powbridge-batch-'));
  dirs.push(dir);
  const store = SpentStore.open(join(dir, 'spent.sqlite'));
  stores.push(store);
  const key = generateSignerKey(csprng);
  const today = utcDay(Date.now() / 1000);
  const keyring = acceptingKeyring([
    { publicKey: encodePoint(key.y), notBeforeDay: today - 1, notAfterDay: today + 1 },
  ]);
  return { store, key, today, redeemer: new Redeemer({ keyring, store }) };
}

describe('group-committed redemption', () => {
  it('the same ticket redeemed 200 times in one tick is granted exactly once', async () => {
    const { key, today, redeemer, store } = setup();
    const { text, serial } = issueTicket(key, today);
    const now = Date.now() / 1000;
    const results = await Promise.allSettled(
      Array.from({ length: 200 }, () => redeemer.redeemBatched(text, now)),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const refused = results.filter((r) => r.status === 'rejected');
    expect(
      refused.every((r) => (r.reason as { code: number }).code === RpcErrorCode.ticketSpent),
    ).toBe(true);
    expect(await store.isSpent(serial)).toBe(true);
    expect(await store.count()).toBe(1);
  });

  // 50 issuances and verifications: ~1 s alone, over 20 s on a 2-core machine under heavy load.
  it(
    'distinct tickets redeemed together are all granted and all recorded',
    { timeout: 90_000 },
    async () => {
      const { key, today, redeemer, store } = setup();
      const tickets = Array.from({ length: 50 }, () => issueTicket(key, today));
      const now = Date.now() / 1000;
      const grants = await Promise.all(tickets.map((t) => redeemer.redeemBatched(t.text, now)));
      expect(new Set(grants.map((g) => g.token)).size).toBe(50);
      const spent = await Promise.all(tickets.map((t) => store.isSpent(t.serial)));
      expect(spent.every(Boolean)).toBe(true);
      // A later batch meets the spends of this one: still one spend per serial.
      await expect(redeemer.redeemBatched(tickets[0]?.text, now)).rejects.toThrow(/already spent/);
    },
  );

  it('a failed batch records nothing and every ticket in it stays redeemable', async () => {
    const { key, today, redeemer, store } = setup();
    const tickets = Array.from({ length: 5 }, () => issueTicket(key, today));
    const original = store.trySpendMany.bind(store);
    store.trySpendMany = () => {
      throw new Error('disk full');
    };
    const now = Date.now() / 1000;
    const failed = await Promise.allSettled(
      tickets.map((t) => redeemer.redeemBatched(t.text, now)),
    );
    expect(failed.every((r) => r.status === 'rejected')).toBe(true);
    expect(await store.count()).toBe(0);
    store.trySpendMany = original;
    const grants = await Promise.all(tickets.map((t) => redeemer.redeemBatched(t.text, now)));
    expect(grants).toHaveLength(5);
  });

  it('trySpendMany decides a serial twice in one batch once', async () => {
    const { store } = setup();
    const request = { serial: csprng(32), keyId: csprng(8), day: 1, at: 1 };
    const results = await store.trySpendMany([
      request,
      request,
      { ...request, serial: csprng(32) },
    ]);
    expect(results.map((r) => r.spent)).toEqual([true, false, true]);
  });
});
