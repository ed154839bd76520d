import { afterEach, describe, expect, it } from 'vitest';
import { RpcErrorCode } from '../../src/protocol/errors.js';
import { csprng, decodePoint, decodeScalar, encodePoint, mod } from '../../src/tickets/group.js';
import { type CreditAccount, TicketIssuer } from '../../src/tickets/issuer.js';
import { type Keyring, utcDay } from '../../src/tickets/keyring.js';
import {
  clientChallenge,
  clientUnblind,
  generateSignerKey,
  InfoPointCache,
  ticketMessage,
  verifierKey,
  verifySignature,
} from '../../src/tickets/scheme.js';

const key = generateSignerKey(csprng);
const keyring: Keyring = {
  issuingKey: () => ({ key, notBeforeDay: 0, notAfterDay: 1e9 }),
  acceptedKey: () => undefined,
};
const verifier = verifierKey(encodePoint(key.y));
const points = new InfoPointCache();
const issuers: TicketIssuer[] = [];
let nextId = 1;

function account(credit = 10, mode: 'tickets' | 'donate' = 'tickets'): CreditAccount {
  return { id: nextId++, mode, credit };
}

function issuer(options: Partial<ConstructorParameters<typeof TicketIssuer>[0]> = {}) {
  const i = new TicketIssuer({ keyring, price: 1, ...options });
  issuers.push(i);
  return i;
}

/** The client's half against the issuer directly: open, blind, finish, unblind, verify. */
async function obtain(i: TicketIssuer, a: CreditAccount, delayMs = 0) {
  const opened = await i.open(a);
  const { info, z } = points.get(key.keyId, opened.day);
  const commitment = {
    a: decodePoint(Buffer.from(opened.a, 'hex'), 'a'),
    b: decodePoint(Buffer.from(opened.b, 'hex'), 'b'),
  };
  const xc = csprng(32);
  const msg = ticketMessage(xc);
  const { e, blinding } = clientChallenge(verifier, z, info, commitment, msg, csprng);
  if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
  const eHex = Buffer.from(
    new Uint8Array(32).map((_, k) => Number((e >> BigInt(8 * k)) & 0xffn)),
  ).toString('hex');
  const answer = i.finish(a, opened.session, eHex);
  const response = {
    r: decodeScalar(Buffer.from(answer.r, 'hex'), 'r'),
    c: decodeScalar(Buffer.from(answer.c, 'hex'), 'c'),
    s: decodeScalar(Buffer.from(answer.s, 'hex'), 's'),
    d: decodeScalar(Buffer.from(answer.d, 'hex'), 'd'),
  };
  const signature = clientUnblind(verifier, z, commitment, response, blinding);
  return { ok: verifySignature(verifier, z, info, msg, signature), opened, eHex };
}

afterEach(() => {
  for (const i of issuers.splice(0)) i.closeAll();
});

describe('ticket issuer (docs/design.md §6.2)', () => {
  it('issues tickets that verify, deducting the price from credit', async () => {
    const i = issuer({ price: 2.5 });
    const a = account(6);
    const { ok, opened } = await obtain(i, a);
    expect(ok).toBe(true);
    expect(a.credit).toBe(3.5);
    expect(opened.day).toBe(utcDay(Date.now() / 1000));
    expect(opened.keyId).toBe(Buffer.from(key.keyId).toString('hex'));
    expect(opened.session).toMatch(/^[0-9a-f]{32}$/);
  });

  it('never has more than K sessions open per (key, day), however many circuits ask at once', async () => {
    const K = 4;
    const i = issuer({ maxOpenSessions: K, maxQueued: 1000 });
    let open = 0;
    let max = 0;
    i.on('opened', (e) => {
      open = e.open;
      max = Math.max(max, e.open);
      expect(e.open).toBeLessThanOrEqual(K);
    });
    i.on('closed', (e) => {
      open = e.open;
    });
    const circuits = Array.from({ length: 120 }, () => account(1));
    // Each client holds its session a few ms before answering, so sessions overlap.
    const results = await Promise.all(circuits.map((a, n) => obtain(i, a, 1 + (n % 5))));
    expect(results.every((r) => r.ok)).toBe(true);
    expect(max).toBe(K);
    expect(open).toBe(0);
    expect(circuits.every((a) => a.credit === 0)).toBe(true);
  });

  it('refuses with 33 and retryAfter when the queue is full', async () => {
    const i = issuer({ maxOpenSessions: 1, maxQueued: 2, sessionTtlMs: 5_000 });
    const holders = [account(), account(), account()];
    const first = i.open(holders[0] as CreditAccount);
    const waiting = [i.open(holders[1] as CreditAccount), i.open(holders[2] as CreditAccount)];
    await first;
    await expect(i.open(account())).rejects.toMatchObject({
      code: RpcErrorCode.issuerBusy,
      data: { retryAfter: 5 },
    });
    i.closeAll();
    for (const holder of holders.slice(1)) i.circuitClosed(holder);
    await Promise.allSettled(waiting);
  });

  it('a queued request gives up with 33 after maxWaitMs', async () => {
    const i = issuer({ maxOpenSessions: 1, maxWaitMs: 50 });
    await i.open(account());
    await expect(i.open(account())).rejects.toMatchObject({ code: RpcErrorCode.issuerBusy });
  });

  it('one open session per circuit', async () => {
    const i = issuer();
    const a = account(5);
    await i.open(a);
    await expect(i.open(a)).rejects.toMatchObject({
      code: RpcErrorCode.issuerBusy,
      message: /already open/,
    });
  });

  it('34 without enough credit, and for donation-mode circuits', async () => {
    const i = issuer({ price: 2 });
    await expect(i.open(account(1.99))).rejects.toMatchObject({
      code: RpcErrorCode.notEnoughCredit,
    });
    await expect(i.open(account(100, 'donate'))).rejects.toMatchObject({
      code: RpcErrorCode.notEnoughCredit,
      message: /donation/,
    });
  });

  it('answers exactly one e per session: a second finish is refused', async () => {
    const i = issuer();
    const a = account(5);
    const { opened, eHex } = await obtain(i, a);
    expect(() => i.finish(a, opened.session, eHex)).toThrow(/unknown or expired/);
  });

  it('a malformed e consumes the session (no retry with the same nonces)', async () => {
    const i = issuer();
    const a = account(5);
    const opened = await i.open(a);
    expect(() => i.finish(a, opened.session, 'ff'.repeat(32))).toThrow(/not reduced/);
    expect(() => i.finish(a, opened.session, '00'.repeat(32))).toThrow(/unknown or expired/);
    expect(i.openSessions(opened.keyId, opened.day)).toBe(0);
  });

  it('only the circuit that opened a session can finish it', async () => {
    const i = issuer();
    const a = account(5);
    const opened = await i.open(a);
    expect(() => i.finish(account(5), opened.session, '00'.repeat(32))).toThrow(
      /unknown or expired/,
    );
  });

  it('an unanswered session expires after the TTL and its price is forfeited', async () => {
    // A refund would let a few funded circuits hold all K slots for free, indefinitely.
    const i = issuer({ sessionTtlMs: 40, price: 3 });
    const a = account(4);
    const opened = await i.open(a);
    expect(a.credit).toBe(1);
    await new Promise((r) => setTimeout(r, 80));
    expect(a.credit).toBe(1);
    await expect(i.open(a)).rejects.toMatchObject({ code: RpcErrorCode.notEnoughCredit });
    expect(i.openSessions(opened.keyId, opened.day)).toBe(0);
    expect(() => i.finish(a, opened.session, '00'.repeat(32))).toThrow(/unknown or expired/);
  });

  it('a closed circuit frees its slot for the next in the queue', async () => {
    const i = issuer({ maxOpenSessions: 1 });
    const a = account();
    const opened = await i.open(a);
    const b = account();
    const next = i.open(b);
    i.circuitClosed(a);
    const second = await next;
    expect(second.session).not.toBe(opened.session);
    expect(i.openSessions(second.keyId, second.day)).toBe(1);
  });

  it('refuses K above the hard maximum of 8', () => {
    expect(() => new TicketIssuer({ keyring, price: 1, maxOpenSessions: 9 })).toThrow(/ROS/);
    expect(() => new TicketIssuer({ keyring, price: 1, maxOpenSessions: 0 })).toThrow(RangeError);
  });

  it('nonces are fresh per session: commitments never repeat', async () => {
    const i = issuer();
    const seen = new Set<string>();
    for (let n = 0; n < 50; n++) {
      const a = account(1);
      const opened = await i.open(a);
      seen.add(opened.a);
      i.circuitClosed(a);
    }
    expect(seen.size).toBe(50);
    expect(mod(1n)).toBe(1n);
  });
});
