import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RpcError } from '../../src/protocol/errors.js';
import { GrantBook } from '../../src/tickets/grant-book.js';
import { encodePoint, encodeScalar, Q } from '../../src/tickets/group.js';
import { type Grant, oldestKeptDay, Redeemer } from '../../src/tickets/redeemer.js';
import { generateSignerKey, type SignerKey } from '../../src/tickets/scheme.js';
import { SpentStore } from '../../src/tickets/spent-store.js';
import {
  type Participant,
  prepareRace,
  race,
  startProcess,
  startThread,
} from '../helpers/spend-race.js';
import { acceptingKeyring, csprng, issueTicket } from '../helpers/ticket-issue.js';

const DAY = 20_413; // 2025-11-21
const NOW = DAY * 86_400 + 3_600;

// Our key, valid a week either side; a second accepted key; a key of a relay we do not know.
const ours = generateSignerKey(csprng);
const peers = generateSignerKey(csprng);
const stranger = generateSignerKey(csprng);
const keyring = acceptingKeyring([
  { publicKey: encodePoint(ours.y), notBeforeDay: DAY - 7, notAfterDay: DAY + 7 },
  { publicKey: encodePoint(peers.y), notBeforeDay: DAY, notAfterDay: DAY, owner: 'backup-1' },
]);

let dir: string;
let file: string;
let store: SpentStore;
let redeemer: Redeemer;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'powbridge-redeem-'));
  file = join(dir, 'spent.sqlite');
  store = SpentStore.open(file);
  redeemer = new Redeemer({ keyring, store });
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * Every redemption goes through `redeemBatched`, the path the relay's `ticket.redeem` takes
 * (src/tickets/ticket-desk.ts): the spend is group-committed with others of the same tick.
 */
function redeem(ticket: unknown, now = NOW, by = redeemer): Promise<Grant> {
  return by.redeemBatched(ticket, now);
}

/** The RpcError a redemption is refused with, or a failure if it returns a grant. */
async function refusal(ticket: unknown, now = NOW, by = redeemer): Promise<RpcError> {
  try {
    await redeem(ticket, now, by);
  } catch (err) {
    if (err instanceof RpcError) return err;
    throw err;
  }
  throw new Error('redeemed a ticket that should have been refused');
}

/** A valid ticket's bytes with `edit` applied, re-encoded. */
function edited(key: SignerKey, edit: (bytes: Buffer) => void, day = DAY): string {
  const bytes = Buffer.from(issueTicket(key, day).text, 'base64url');
  edit(bytes);
  return bytes.toString('base64url');
}

describe('Redeemer', () => {
  it('turns a valid ticket into a paid grant that carries nothing of the ticket', async () => {
    const { text, serial } = issueTicket(ours, DAY);
    const grant = await redeem(text, NOW + 0.7);
    expect(Object.keys(grant).sort()).toEqual(['class', 'expiresAt', 'token']);
    expect(grant.class).toBe('paid');
    expect(grant.expiresAt).toBe(NOW + 600);
    expect(grant.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(grant.token, 'base64url')).toHaveLength(32);
    const shown = JSON.stringify(grant);
    expect(shown).not.toContain(Buffer.from(serial).toString('hex'));
    expect(shown).not.toContain(Buffer.from(serial).toString('base64url'));
    expect(await store.isSpent(serial)).toBe(true);
    expect(redeemer.grants.lookup(grant.token, NOW)).toEqual({ expiresAt: NOW + 600, tickets: 1 });
    expect(redeemer.counts()).toMatchObject({ redeemed: 1 });
  });

  it('a second redemption of the same ticket is refused with 32', async () => {
    const { text } = issueTicket(ours, DAY);
    await redeem(text);
    expect(await refusal(text)).toMatchObject({ code: 32, message: 'ticket already spent' });
    expect(await refusal(text, NOW + 86_400)).toMatchObject({ code: 32 });
  });

  it('accepts the issue day and the next; refuses older and future days with 31', async () => {
    expect((await redeem(issueTicket(ours, DAY - 1).text)).class).toBe('paid');
    expect((await redeem(issueTicket(ours, DAY).text, NOW + 86_400 - 4_000)).class).toBe('paid');
    expect(await refusal(issueTicket(ours, DAY - 2).text)).toMatchObject({
      code: 31,
      message: 'ticket expired',
    });
    expect(await refusal(issueTicket(ours, DAY + 1).text)).toMatchObject({
      code: 31,
      message: 'ticket is from a future day',
    });
    // One second before midnight UTC, tomorrow's ticket is still from the future.
    expect((await refusal(issueTicket(ours, DAY + 1).text, (DAY + 1) * 86_400 - 1)).code).toBe(31);
  });

  it("refuses a ticket from outside its key's validity with 31", async () => {
    // The peer key is valid on DAY only: its ticket of yesterday, redeemed today, is refused.
    const message = "ticket day is outside its key's validity";
    expect(await refusal(issueTicket(peers, DAY - 1).text)).toMatchObject({ code: 31, message });
    expect((await redeem(issueTicket(peers, DAY).text)).class).toBe('paid');
    // Validity is about the issue day: a ticket from the key's last day is good the day after.
    expect((await redeem(issueTicket(ours, DAY + 7).text, (DAY + 8) * 86_400)).class).toBe('paid');
    expect(await refusal(issueTicket(ours, DAY + 8).text, (DAY + 8) * 86_400)).toMatchObject({
      code: 31,
      message,
    });
  });

  it('refuses a tampered signature or x_c with 30, and records nothing', async () => {
    for (const at of [45, 77, 109, 141, 13]) {
      // Flip the lowest bit of ρ, ω, σ, δ (little-endian: stays < q) or of x_c.
      const text = edited(ours, (b) => (b[at] = (b[at] as number) ^ 1));
      expect(await refusal(text)).toMatchObject({ code: 30, message: 'bad ticket signature' });
    }
    expect(await store.count()).toBe(0);
    expect(redeemer.counts()).toMatchObject({ badSignature: 5, redeemed: 0 });
  });

  it("refuses another relay's key with 35", async () => {
    expect(await refusal(issueTicket(stranger, DAY).text)).toMatchObject({
      code: 35,
      message: 'unknown ticket key',
    });
  });

  it('refuses a ticket that names our key but was signed by another with 30', async () => {
    for (const signer of [stranger, peers]) {
      const { text } = issueTicket(signer, DAY, { claimedKeyId: ours.keyId });
      expect(await refusal(text)).toMatchObject({ code: 30, message: 'bad ticket signature' });
    }
  });

  it('refuses scalars >= q and identity commitments with 30', async () => {
    for (const at of [45, 77, 109, 141]) {
      const text = edited(ours, (b) => b.set(encodeScalarUnchecked(Q), at));
      expect(await refusal(text)).toMatchObject({ code: 30, message: 'malformed ticket' });
      const high = edited(ours, (b) => b.fill(0xff, at, at + 32));
      expect(await refusal(high)).toMatchObject({ code: 30, message: 'malformed ticket' });
    }
    // ρ = ω = 0 makes α = g^ρ y^ω the identity; σ = δ = 0 does so for β.
    expect(await refusal(edited(ours, (b) => b.fill(0, 45, 109)))).toMatchObject({ code: 30 });
    expect(await refusal(edited(ours, (b) => b.fill(0, 109, 173)))).toMatchObject({ code: 30 });
    expect(await refusal(edited(ours, (b) => b.fill(0, 45, 173)))).toMatchObject({ code: 30 });
    // And the largest valid scalar is just a wrong signature, not a format error.
    const max = edited(ours, (b) => b.set(encodeScalar(Q - 1n), 45));
    expect(await refusal(max)).toMatchObject({ code: 30, message: 'bad ticket signature' });
    expect(await store.count()).toBe(0);
  });

  it('refuses anything that is not a ticket with 30 "malformed ticket"', async () => {
    const valid = issueTicket(ours, DAY).text;
    const garbage: unknown[] = [
      undefined,
      null,
      42,
      true,
      {},
      [],
      [valid],
      { ticket: valid },
      Buffer.from(valid, 'base64url'),
      '',
      'not a ticket',
      'A'.repeat(10_000),
      `${valid}=`,
      valid.slice(1),
      `${valid}AA`,
      valid.replace(/[-_]/g, '+'),
      edited(ours, (b) => (b[0] = 2)),
    ];
    for (const input of garbage) {
      expect(await refusal(input)).toMatchObject({ code: 30, message: 'malformed ticket' });
    }
    expect(redeemer.counts()).toMatchObject({ malformed: garbage.length });
    expect(await store.count()).toBe(0);
  });

  it('answers 33 when the store stays locked, and the ticket stays redeemable', async () => {
    const busyStore = SpentStore.open(file, { busyTimeoutMs: 50 });
    const busy = new Redeemer({ keyring, store: busyStore });
    const { text, serial } = issueTicket(ours, DAY);
    const other = new Database(file);
    other.exec('BEGIN IMMEDIATE');
    try {
      const error = await refusal(text, NOW, busy);
      expect(error).toMatchObject({ code: 33, data: { retryAfter: 1 } });
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
    expect(await store.isSpent(serial)).toBe(false);
    expect((await redeem(text, NOW, busy)).class).toBe('paid');
    await busyStore.close();
  });

  it('keeps serials for as long as some ticket of their day could still come back', async () => {
    for (const [i, day] of [DAY - 3, DAY - 2, DAY - 1, DAY].entries()) {
      await store.trySpend({
        serial: new Uint8Array(32).fill(i + 1),
        keyId: ours.keyId,
        day,
        at: 0,
      });
    }
    expect(oldestKeptDay(DAY)).toBe(DAY - 2);
    expect(await redeemer.pruneSpent(NOW)).toBe(1);
    expect((await store.since(0)).map((r) => r.day)).toEqual([DAY - 2, DAY - 1, DAY]);
  });

  it('uses the configured window and rejects a nonsensical one', async () => {
    const short = new Redeemer({ keyring, store, windowSeconds: 30 });
    expect((await redeem(issueTicket(ours, DAY).text, NOW, short)).expiresAt).toBe(NOW + 30);
    expect(() => new Redeemer({ keyring, store, windowSeconds: 0 })).toThrow(RangeError);
    expect(() => new Redeemer({ keyring, store, windowSeconds: 1.5 })).toThrow(RangeError);
  });
});

describe('1,000 concurrent redemptions of one ticket', () => {
  it('in one process, over several connections: exactly one grant', async () => {
    const { text } = issueTicket(ours, DAY);
    const stores = [store, SpentStore.open(file), SpentStore.open(file)];
    const redeemers = stores.map((s) => new Redeemer({ keyring, store: s }));
    try {
      // Each connection group-commits the requests of one tick (256 at most per batch), so
      // the same serial meets itself inside a batch and the other connections' batches.
      const outcomes = await Promise.allSettled(
        Array.from({ length: 1_000 }, (_, i) =>
          redeem(text, NOW, redeemers[i % redeemers.length] as Redeemer),
        ),
      );
      const granted = outcomes.filter((o) => o.status === 'fulfilled');
      expect(granted).toHaveLength(1);
      for (const o of outcomes) {
        if (o.status === 'rejected') expect(o.reason).toMatchObject({ code: 32 });
      }
    } finally {
      await Promise.all(stores.slice(1).map((s) => s.close()));
    }
  });

  it('across threads and processes on one file: exactly one grant', async () => {
    const { text } = issueTicket(ours, DAY);
    const participants: Participant[] = [
      startThread(),
      startThread(),
      startProcess(),
      startProcess(),
    ];
    const setup = {
      mode: 'redeem',
      file,
      ticket: text,
      publicKeyHex: Buffer.from(encodePoint(ours.y)).toString('hex'),
      now: NOW,
      attempts: 200,
    } as const;
    try {
      const local = prepareRace(setup);
      const results = await race(participants, setup, local);
      await local.close();
      expect(results).toHaveLength(5);
      expect(results.reduce((n, r) => n + r.won.length, 0)).toBe(1);
      for (const r of results) {
        expect(r.won.length + (r.refused['32'] ?? 0)).toBe(200);
      }
      // They raced: the start barrier had every one of them in before any finished.
      expect(Math.max(...results.map((r) => r.startedAt))).toBeLessThan(
        Math.min(...results.map((r) => r.endedAt)),
      );
      expect(await store.count()).toBe(1);
    } finally {
      await Promise.all(participants.map((p) => p.stop()));
    }
  }, 60_000);
});

describe('GrantBook', () => {
  it('expires grants on lookup, on sweep, and trims expired ones as new ones arrive', () => {
    const book = new GrantBook();
    book.add('a', { expiresAt: 100, tickets: 1 }, 0);
    book.add('b', { expiresAt: 200, tickets: 1 }, 0);
    expect(book.lookup('a', 99)).toEqual({ expiresAt: 100, tickets: 1 });
    expect(book.lookup('a', 100)).toBeUndefined();
    expect(book.size).toBe(1);
    book.add('c', { expiresAt: 300, tickets: 2 }, 250); // 'b' expired: trimmed on the way
    expect(book.size).toBe(1);
    expect(book.lookup('c', 250)).toEqual({ expiresAt: 300, tickets: 2 });
    book.add('d', { expiresAt: 400, tickets: 1 }, 250);
    expect(book.sweep(350)).toBe(1);
    expect(book.lookup('unknown', 0)).toBeUndefined();
    expect(() => book.add('d', { expiresAt: 500, tickets: 1 }, 350)).toThrow(/collision/);
  });
});

/** Little-endian bytes of any value below 2^256 (encodeScalar refuses values >= q). */
function encodeScalarUnchecked(value: bigint): Uint8Array {
  const out = new Uint8Array(32);
  for (let i = 0, v = value; i < 32; i++, v >>= 8n) out[i] = Number(v & 0xffn);
  return out;
}
