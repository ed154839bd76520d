import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { WorkBudget } from '../../src/lib/work-budget.js';
import { RpcError, RpcErrorCode } from '../../src/protocol/errors.js';
import { encodePoint } from '../../src/tickets/group.js';
import type { AcceptedKey, Keyring } from '../../src/tickets/keyring.js';
import { Redeemer } from '../../src/tickets/redeemer.js';
import { generateSignerKey, verifierKey } from '../../src/tickets/scheme.js';
import { SpentStore } from '../../src/tickets/spent-store.js';
import {
  createTicketVerifierPool,
  queuedTicketVerifier,
  type SignatureTask,
  type TicketVerifier,
} from '../../src/tickets/ticket-verifier.js';
import { csprng, issueTicket } from '../helpers/ticket-issue.js';
import { issueTicketV2, vectorRsaKeys } from '../helpers/ticket-v2.js';

/**
 * Ticket signature checks off the event loop (docs/design.md §6.3): the worker pool gives the
 * verdicts the inline check gives, a full queue and a spent budget are answered 38 with
 * nothing recorded, and the cheap checks refuse before the budget is touched. Needs dist/
 * (`npm run build`): the pool runs dist/workers/verify-ticket.js.
 */

const DAY = 20_430;
const NOW = DAY * 86_400 + 5_000;
const { ours: rsa, draft: otherRsa } = vectorRsaKeys();
const ao = generateSignerKey(csprng);
const otherAo = generateSignerKey(csprng);

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const validity = { notBeforeDay: DAY - 3, notAfterDay: DAY + 3, owner: 'self' };
const accepted = new Map<string, AcceptedKey>([
  [hex(rsa.keyId), { scheme: 'rsa', key: rsa, ...validity }],
  [hex(ao.keyId), { key: verifierKey(encodePoint(ao.y)), ...validity }],
]);
const keyring: Keyring = { issuingKey: () => null, acceptedKey: (id) => accepted.get(id) };

const dirs: string[] = [];
const stores: SpentStore[] = [];
function openStore(): SpentStore {
  const dir = mkdtempSync(join(tmpdir(), 'powbridge-verifier-'));
  dirs.push(dir);
  const store = SpentStore.open(join(dir, 'spent.sqlite'));
  stores.push(store);
  return store;
}
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** 'granted', or the code it was refused with. */
async function outcome(redeemer: Redeemer, ticket: unknown): Promise<'granted' | number> {
  try {
    await redeemer.redeemBatched(ticket, NOW);
    return 'granted';
  } catch (err) {
    if (err instanceof RpcError) return err.code;
    throw err;
  }
}

function flipped(text: string, at: number): string {
  const bytes = Buffer.from(text, 'base64url');
  bytes[at] = (bytes[at] ?? 0) ^ 0x01;
  return bytes.toString('base64url');
}

/** A runner whose tasks finish only when the test says so. */
function heldRunner() {
  const held: { task: SignatureTask; finish: (verdict: boolean) => void }[] = [];
  const run = (task: SignatureTask) =>
    new Promise<unknown>((resolve) => held.push({ task, finish: resolve }));
  return { run, held };
}

describe('ticket verification in the worker pool', () => {
  let pool: TicketVerifier;
  beforeAll(() => {
    pool = createTicketVerifierPool({ threads: 2 });
  });
  afterAll(() => pool.close());

  it('gives the verdicts of the inline check: v1 and v2, good, bad, wrong key, spent', async () => {
    const v1 = issueTicket(ao, DAY).text;
    const v2 = issueTicketV2(rsa, DAY).text;
    const cases: [string, string, 'granted' | number][] = [
      ['v1 good', v1, 'granted'],
      ['v2 good', v2, 'granted'],
      ['v1 spent', v1, RpcErrorCode.ticketSpent],
      ['v2 spent', v2, RpcErrorCode.ticketSpent],
      ['v1 bad signature', flipped(issueTicket(ao, DAY).text, 77), RpcErrorCode.badTicketSignature],
      [
        'v2 bad signature',
        flipped(issueTicketV2(rsa, DAY).text, 200),
        RpcErrorCode.badTicketSignature,
      ],
      [
        'v1 by another key under ours',
        issueTicket(otherAo, DAY, { claimedKeyId: ao.keyId }).text,
        RpcErrorCode.badTicketSignature,
      ],
      [
        'v2 by another key under ours',
        issueTicketV2(otherRsa, DAY, { claimedKeyId: rsa.keyId }).text,
        RpcErrorCode.badTicketSignature,
      ],
      [
        'v2 under an Abe–Okamoto key',
        issueTicketV2(rsa, DAY, { claimedKeyId: ao.keyId }).text,
        RpcErrorCode.badTicketSignature,
      ],
      ['v1 yesterday', issueTicket(ao, DAY - 1).text, 'granted'],
      ['v2 yesterday', issueTicketV2(rsa, DAY - 1).text, 'granted'],
    ];
    const inline = new Redeemer({ keyring, store: openStore() });
    const pooled = new Redeemer({ keyring, store: openStore(), verifier: pool });
    for (const [name, ticket, expected] of cases) {
      const [inInline, inPool] = [await outcome(inline, ticket), await outcome(pooled, ticket)];
      expect({ name, verdict: inPool }).toEqual({ name, verdict: expected });
      expect({ name, verdict: inPool }).toEqual({ name, verdict: inInline });
    }
    expect(pooled.counts()).toEqual(inline.counts());
  });

  it('checks concurrent tickets each on its own: one bad one among good ones fails alone', async () => {
    const redeemer = new Redeemer({ keyring, store: openStore(), verifier: pool });
    const tickets = Array.from({ length: 12 }, (_, i) =>
      i % 2 === 0 ? issueTicketV2(rsa, DAY).text : issueTicket(ao, DAY).text,
    );
    tickets[5] = flipped(tickets[5] ?? '', 100);
    const outcomes = await Promise.all(tickets.map((t) => outcome(redeemer, t)));
    expect(outcomes).toEqual(
      tickets.map((_, i) => (i === 5 ? RpcErrorCode.badTicketSignature : 'granted')),
    );
  });
});

describe('the verifier queue is bounded', () => {
  it('refuses beyond threads + maxQueue with 38 and records nothing; the ticket stays good', async () => {
    const { run, held } = heldRunner();
    const verifier = queuedTicketVerifier(run, { threads: 1, maxQueue: 2 });
    const store = openStore();
    const redeemer = new Redeemer({ keyring, store, verifier });
    const waiting = Array.from({ length: 3 }, () =>
      redeemer.redeemBatched(issueTicketV2(rsa, DAY).text, NOW),
    );
    await vi.waitFor(() => expect(held).toHaveLength(3));
    const { text, serial } = issueTicketV2(rsa, DAY);
    const refused = await redeemer.redeemBatched(text, NOW).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(RpcError);
    expect(refused).toMatchObject({
      code: RpcErrorCode.relayOverloaded,
      data: { retryAfter: 1 },
    });
    expect(await store.isSpent(serial)).toBe(false);
    expect(redeemer.overloaded()).toBe(1);
    // The queue drains (the tasks are the main thread's plain data: no private key parts).
    for (const h of held.splice(0)) {
      expect(Object.keys(h.task.key).sort()).toEqual(['e', 'keyId', 'n', 'scheme', 'spki']);
      h.finish(true);
    }
    await expect(Promise.all(waiting)).resolves.toHaveLength(3);
    const again = redeemer.redeemBatched(text, NOW);
    await vi.waitFor(() => expect(held).toHaveLength(1));
    held[0]?.finish(true);
    await expect(again).resolves.toMatchObject({ class: 'paid' });
    expect(await store.isSpent(serial)).toBe(true);
  });

  it('refuses with a bad reply from a worker instead of granting', async () => {
    const verifier = queuedTicketVerifier(() => Promise.resolve('yes'), { threads: 1 });
    const redeemer = new Redeemer({ keyring, store: openStore(), verifier });
    await expect(redeemer.redeemBatched(issueTicketV2(rsa, DAY).text, NOW)).rejects.toThrow(
      /bad worker reply/,
    );
  });
});

describe('the budget for signature checks', () => {
  it('answers 38 with retryAfter once spent, records nothing, and recovers as time passes', async () => {
    let clock = 1_000_000;
    const budget = new WorkBudget({ perSecond: 2, burstSeconds: 1, clock: () => clock });
    const store = openStore();
    const redeemer = new Redeemer({ keyring, store, budget });
    expect(await outcome(redeemer, issueTicketV2(rsa, DAY).text)).toBe('granted');
    expect(await outcome(redeemer, issueTicket(ao, DAY).text)).toBe('granted');

    const { text, serial } = issueTicketV2(rsa, DAY);
    const refused = await redeemer.redeemBatched(text, NOW).catch((err: unknown) => err);
    expect(refused).toMatchObject({
      code: RpcErrorCode.relayOverloaded,
      message: 'relay overloaded, retry',
      data: { retryAfter: 1 },
    });
    // A forged ticket is refused the same way: the budget is spent before anything is checked.
    expect(await outcome(redeemer, flipped(issueTicketV2(rsa, DAY).text, 200))).toBe(
      RpcErrorCode.relayOverloaded,
    );
    expect(await store.isSpent(serial)).toBe(false);
    expect(await store.count()).toBe(2);
    expect(redeemer.overloaded()).toBe(2);
    expect(redeemer.counts()).toMatchObject({ redeemed: 2, badSignature: 0 });

    clock += 500; // one unit back at 2 per second
    expect(await outcome(redeemer, text)).toBe('granted');
    expect(await outcome(redeemer, issueTicket(ao, DAY).text)).toBe(RpcErrorCode.relayOverloaded);
    clock += 10_000; // never more than the burst
    const burst = await Promise.all(
      Array.from({ length: 3 }, () => outcome(redeemer, issueTicket(ao, DAY).text)),
    );
    expect(burst.sort()).toEqual([RpcErrorCode.relayOverloaded, 'granted', 'granted'].sort());
  });

  it('is not touched by what the cheap checks refuse', async () => {
    const take = vi.fn(() => ({ granted: true as const }));
    const store = openStore();
    const redeemer = new Redeemer({ keyring, store, budget: { take } });
    const spent = issueTicketV2(rsa, DAY);
    await redeemer.redeemBatched(spent.text, NOW);
    expect(take).toHaveBeenCalledTimes(1);
    const refusedCheaply: [unknown, number][] = [
      ['not a ticket', RpcErrorCode.badTicketSignature],
      [42, RpcErrorCode.badTicketSignature],
      [`${issueTicketV2(rsa, DAY).text}AA`, RpcErrorCode.badTicketSignature],
      [issueTicketV2(otherRsa, DAY).text, RpcErrorCode.unknownTicketKey],
      [issueTicketV2(rsa, DAY - 2).text, RpcErrorCode.ticketExpired],
      [issueTicketV2(rsa, DAY + 1).text, RpcErrorCode.ticketExpired],
      // A v1 ticket under our RSA key: the scheme alone says it cannot verify.
      [issueTicket(ao, DAY, { claimedKeyId: rsa.keyId }).text, RpcErrorCode.badTicketSignature],
      // A spent serial, even with a signature that would not verify.
      [spent.text, RpcErrorCode.ticketSpent],
      [flipped(spent.text, 200), RpcErrorCode.ticketSpent],
    ];
    for (const [ticket, code] of refusedCheaply) {
      expect({ ticket, verdict: await outcome(redeemer, ticket) }).toEqual({
        ticket,
        verdict: code,
      });
    }
    expect(take).toHaveBeenCalledTimes(1);
    expect(redeemer.overloaded()).toBe(0);
  });
});
