import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { RpcError, RpcErrorCode } from '../../src/protocol/errors.js';
import { PeerClient } from '../../src/peers/peer-client.js';
import { serialsDigest } from '../../src/storage/peer-ledger.js';
import { PEER_PREFIX, paymentResponse } from '../../src/peers/peer-messages.js';
import { newId } from '../../src/peers/ticket-gate.js';
import type { Relay } from '../../src/relay/relay.js';
import { parseMetrics } from '../helpers/metrics-text.js';
import { type PeeredRelays, startPeeredRelays } from './peered-relays.js';

/**
 * Protocol 2 between two real relays on loopback (docs/design.md §7): a ticket of R1 redeemed at
 * its backup R2, the reservation that keeps it single-use across both, acceptance while R1
 * is down, replication with conflict detection after a partition, and payment requests.
 */

let pair: PeeredRelays | null = null;
afterEach(async () => {
  await pair?.close();
  pair = null;
});

const running = (relay: Relay | null): Relay => {
  if (!relay) throw new Error('relay not running');
  return relay;
};
const peering = (relay: Relay | null) => {
  const p = running(relay).peering;
  if (!p) throw new Error('no peering');
  return p;
};
const redeem = (relay: Relay | null, ticket: string) =>
  running(relay).tickets.service.redeem(ticket);
/** Both relays' log lines, parsed, for the tests that pass `logger` to startBoth. */
const captured = () => {
  const lines: { msg: string; level: number; [key: string]: unknown }[] = [];
  const logger = pino(
    { level: 'debug' },
    { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) },
  );
  return { lines, logger };
};
const statusOf = async (relay: Relay | null) =>
  (await running(relay).app.inject('/v1/status')).json<{
    peers: {
      name: string;
      acceptTickets: boolean;
      refusing: { reason: string; code: number } | null;
      refused: Record<string, number>;
      balance: Record<string, number>;
    }[];
  }>().peers[0];
const metricsOf = async (relay: Relay | null) =>
  parseMetrics((await running(relay).app.inject('/metrics')).body);
const codeOf = async (attempt: Promise<unknown>): Promise<number | 'ok'> => {
  try {
    await attempt;
    return 'ok';
  } catch (err) {
    if (err instanceof RpcError) return err.code;
    throw err;
  }
};

/** Both relays up; R2 has fetched R1's descriptor (so it knows R1's ticket keys). */
async function startBoth(options: Parameters<typeof startPeeredRelays>[0] = {}) {
  const started = await startPeeredRelays(options);
  pair = started;
  await started.start(started.a);
  await started.start(started.b);
  await peering(started.b.relay).syncPeer('r1');
  return started;
}

describe('ticket exchange', () => {
  it("R2 serves R1's ticket after reserving its serial at R1", async () => {
    pair = await startPeeredRelays();
    const { a, b } = pair;
    await pair.start(a);
    await pair.start(b);
    const ticket = pair.ticket(a);

    // Before R2 has R1's descriptor, R1's key is unknown there.
    expect(await codeOf(redeem(b.relay, ticket.text))).toBe(RpcErrorCode.unknownTicketKey);
    await peering(b.relay).syncPeer('r1');
    expect((await peering(b.relay).status())[0]?.keys).toHaveLength(1);
    // The relays issue RSA (the default): a v2 ticket under R1's RSA key.
    expect(
      running(a.relay)
        .tickets.keys.ticketKeys()
        .map((k) => k.scheme),
    ).toEqual(['rsapbssa-sha384-pss-deterministic']);

    const grant = await redeem(b.relay, ticket.text);
    expect(grant.class).toBe('paid');
    // R1 recorded the spend as made by r2, before R2 granted.
    expect((await running(a.relay).tickets.store.lookup(ticket.serial))?.origin).toBe('r2');
    expect((await running(b.relay).tickets.store.lookup(ticket.serial))?.origin).toBe('local');
    expect(await codeOf(redeem(a.relay, ticket.text))).toBe(RpcErrorCode.ticketSpent);
    expect(await codeOf(redeem(b.relay, ticket.text))).toBe(RpcErrorCode.ticketSpent);
    expect(await peering(b.relay).ledger.balance('r1')).toMatchObject({ served: 1, owedSync: 0 });
    const metrics = (await running(b.relay).app.inject('/metrics')).body;
    expect(metrics).toContain('powbridge_tickets_total{event="redeemed"} 1');
    expect(metrics).toContain('powbridge_tickets_total{event="refused",reason="spent"} 1');
    expect(metrics).toContain('powbridge_peer_tickets{peer="r1",kind="served"} 1');
  });

  it("with Abe–Okamoto relays, R2 serves R1's v1 ticket once", async () => {
    const both = await startBoth({ scheme: 'ao' });
    const { a, b } = both;
    expect(
      running(a.relay)
        .tickets.keys.ticketKeys()
        .map((k) => k.scheme),
    ).toEqual(['ao-ristretto255']);
    const ticket = both.ticket(a);
    expect((await redeem(b.relay, ticket.text)).class).toBe('paid');
    expect((await running(a.relay).tickets.store.lookup(ticket.serial))?.origin).toBe('r2');
    expect(await codeOf(redeem(a.relay, ticket.text))).toBe(RpcErrorCode.ticketSpent);
  });

  it('one ticket redeemed concurrently at both relays succeeds exactly once', async () => {
    const both = await startBoth({ paymentEvery: 1000, maxUnpaid: 1000 });
    const { a, b } = both;
    for (let round = 0; round < 5; round++) {
      const ticket = both.ticket(a);
      const attempts = Array.from({ length: 16 }, (_, i) =>
        codeOf(redeem(i % 2 === 0 ? a.relay : b.relay, ticket.text)),
      );
      const results = await Promise.all(attempts);
      expect(results.filter((r) => r === 'ok')).toHaveLength(1);
      expect(results.filter((r) => r === RpcErrorCode.ticketSpent)).toHaveLength(15);
    }
  });

  it('R2 accepts R1 tickets while R1 is down, unless configured not to', async () => {
    const both = await startBoth({ acceptWhenOffline: false });
    const { a, b } = both;
    const upGauge = async () =>
      /powbridge_peer_up\{peer="r1"\} (-?\d+)/.exec(
        (await running(b.relay).app.inject('/metrics')).body,
      )?.[1];
    expect(await upGauge()).toBe('1');
    const ticket = both.ticket(a);
    await both.stop(a);
    expect(await codeOf(redeem(b.relay, ticket.text))).toBe(RpcErrorCode.issuerBusy);
    // Nothing was recorded: the client can redeem it later.
    expect(await running(b.relay).tickets.store.isSpent(ticket.serial)).toBe(false);
    // The failed reservation told the roster, and the gauge follows its events.
    expect((await peering(b.relay).status())[0]).toMatchObject({ up: false });
    expect(await upGauge()).toBe('0');
    // R1's tickets are refused (33) while it is away, and /v1/status and /metrics say so.
    expect(await statusOf(b.relay)).toMatchObject({
      acceptTickets: false,
      refusing: { reason: 'offline', code: 33 },
      refused: { offline: 1, unpaidLimit: 0, peerRefused: 0, spent: 0 },
    });
    const metrics = await metricsOf(b.relay);
    expect(metrics.get('powbridge_peer_accepting{peer="r1"}')).toBe(0);
    expect(metrics.get('powbridge_peer_refusing{peer="r1",reason="offline"}')).toBe(1);
    expect(metrics.get('powbridge_peer_refusing{peer="r1",reason="unpaid_limit"}')).toBe(0);
    expect(metrics.get('powbridge_peer_refusals_total{peer="r1",reason="offline"}')).toBe(1);
    // Back up: accepted again.
    await both.start(a);
    expect((await redeem(b.relay, ticket.text)).class).toBe('paid');
    expect(await statusOf(b.relay)).toMatchObject({ acceptTickets: true, refusing: null });
  });
});

describe('partition, replication and conflicts', () => {
  it('both relays detect a serial spent on each side of a partition', async () => {
    const log = captured();
    const both = await startBoth({ logger: log.logger });
    const { a, b } = both;
    const double = both.ticket(a);
    const single = both.ticket(a);
    const spentAtR1First = both.ticket(a);
    await redeem(a.relay, spentAtR1First.text);

    // R1 goes down: R2 accepts R1's tickets and owes R1 the sync.
    await both.stop(a);
    await redeem(b.relay, double.text);
    await redeem(b.relay, single.text);
    expect((await peering(b.relay).status())[0]).toMatchObject({ up: false });
    expect((await peering(b.relay).ledger.balance('r1')).owedSync).toBe(2);

    // Now R2 is down and R1 back: R1 redeems the same ticket again (it cannot know).
    await both.stop(b);
    await both.start(a);
    await redeem(a.relay, double.text);

    // Both up: each pulls the other's log.
    await both.start(b);
    await peering(a.relay).syncPeer('r2');
    await peering(b.relay).syncPeer('r1');
    await peering(a.relay).syncPeer('r2'); // acks R2's log up to its end
    for (const [relay, peer] of [
      [a.relay, 'r2'],
      [b.relay, 'r1'],
    ] as const) {
      const ledger = peering(relay).ledger;
      const conflicts = await ledger.conflicts(peer);
      expect(conflicts).toHaveLength(1);
      expect(Buffer.from(conflicts[0]!.serial)).toEqual(Buffer.from(double.serial));
      const status = (await running(relay).app.inject('/v1/status')).json<{
        peers: { name: string; balance: { conflicts: number } }[];
      }>();
      expect(status.peers[0]).toMatchObject({ name: peer, balance: { conflicts: 1 } });
      const metrics = (await running(relay).app.inject('/metrics')).body;
      expect(metrics).toContain(`powbridge_peer_conflicts{peer="${peer}"} 1`);
    }
    // The spent sets converged: every serial is spent on both sides.
    for (const t of [double, single, spentAtR1First]) {
      expect(await running(a.relay).tickets.store.isSpent(t.serial)).toBe(true);
      expect(await running(b.relay).tickets.store.isSpent(t.serial)).toBe(true);
    }
    expect((await running(a.relay).tickets.store.lookup(single.serial))?.origin).toBe('r2');
    expect((await peering(b.relay).ledger.balance('r1')).owedSync).toBe(0);
    // R2 served both, but R1 honoured `double` itself: R2 never bills it, only `single`.
    expect(await peering(b.relay).ledger.balance('r1')).toMatchObject({
      served: 2,
      unbilled: 1,
      billed: 0,
      conflicts: 1,
      conflictsNotBilled: 1,
    });
    // Each side logged the double spend once, without the serial.
    const doubles = log.lines.filter((l) => l.msg.startsWith('double spend'));
    expect(doubles).toHaveLength(2);
    const hex = Buffer.from(double.serial).toString('hex');
    for (const line of log.lines) expect(JSON.stringify(line)).not.toContain(hex.slice(0, 12));
    // Syncing again changes nothing (idempotent).
    await peering(a.relay).syncPeer('r2');
    await peering(b.relay).syncPeer('r1');
    expect(await peering(a.relay).ledger.conflicts('r2')).toHaveLength(1);
  });
});

describe('a double spend billed before it was found', () => {
  it('is owed by neither side: the creditor leaves it out of its bill, the debtor out of its debt', async () => {
    const both = await startBoth({ paymentEvery: 2, maxUnpaid: 100 });
    const { a, b } = both;
    const double = both.ticket(a);
    const single = both.ticket(a);

    // R1 down: R2 accepts both and bills R1 for the two at once (delivered later).
    await both.stop(a);
    await redeem(b.relay, double.text);
    await redeem(b.relay, single.text);
    expect(await peering(b.relay).ledger.balance('r1')).toMatchObject({
      billed: 2,
      pendingRequests: 1,
    });

    // R2 down, R1 back: R1 redeems `double` itself.
    await both.stop(b);
    await both.start(a);
    await redeem(a.relay, double.text);

    // R2 back: it pulls R1's log (finding the conflict), then delivers the bill listing both.
    await both.start(b);
    await peering(b.relay).syncPeer('r1');
    const r2 = await peering(b.relay).ledger.balance('r1');
    expect(r2).toMatchObject({
      served: 2,
      billed: 1,
      unpaidToUs: 1,
      conflicts: 1,
      conflictsNotBilled: 1,
      pendingRequests: 0,
    });
    const r1 = await peering(a.relay).ledger.balance('r2');
    expect(r1).toMatchObject({ billedToUs: 1, weOwe: 1, conflicts: 1, conflictsNotOwed: 1 });
    expect(await peering(a.relay).ledger.listRequestsIn('r2')).toMatchObject([{ count: 2 }]);
    expect(await statusOf(a.relay)).toMatchObject({
      balance: { weOwe: 1, conflicts: 1, conflictsNotOwed: 1 },
    });
    const metrics = await metricsOf(b.relay);
    expect(metrics.get('powbridge_peer_tickets{peer="r1",kind="unpaid_to_us"}')).toBe(1);
    expect(metrics.get('powbridge_peer_tickets{peer="r1",kind="conflict_not_billed"}')).toBe(1);
    expect(metrics.get('powbridge_peer_conflicts{peer="r1"}')).toBe(1);

    // Settling what R1 owes leaves both books at zero.
    await peering(a.relay).ledger.recordPaid(
      'r2',
      newId(),
      1,
      'operator',
      Math.floor(Date.now() / 1000),
    );
    await peering(a.relay).syncPeer('r2');
    expect(await peering(b.relay).ledger.balance('r1')).toMatchObject({
      settledToUs: 1,
      unpaidToUs: 0,
    });
    expect(await peering(a.relay).ledger.balance('r2')).toMatchObject({ weOwe: 0 });
    // Later bills count as before.
    await redeem(b.relay, both.ticket(a).text);
    await redeem(b.relay, both.ticket(a).text);
    await peering(b.relay).syncPeer('r1');
    expect(await peering(b.relay).ledger.balance('r1')).toMatchObject({ billed: 3, unpaidToUs: 2 });
    expect(await peering(a.relay).ledger.balance('r2')).toMatchObject({ billedToUs: 3, weOwe: 2 });
  });
});

describe('a rebuilt spent log', () => {
  it("is read again from the start when a peer's log restarts below our cursor", async () => {
    const both = await startBoth();
    const { a, b } = both;
    await redeem(a.relay, both.ticket(a).text);
    await redeem(a.relay, both.ticket(a).text);
    await peering(b.relay).syncPeer('r1');
    expect(await peering(b.relay).ledger.pulled('r1')).toBe(2);

    // R1 loses its spent store (disk replaced, no backup) and starts over at seq 1.
    await both.stop(a);
    for (const suffix of ['', '-wal', '-shm']) {
      rmSync(join(a.dir, `spent.sqlite${suffix}`), { force: true });
    }
    await both.start(a);
    const after = both.ticket(a);
    await redeem(a.relay, after.text);
    await peering(b.relay).syncPeer('r1');
    expect((await running(b.relay).tickets.store.lookup(after.serial))?.origin).toBe('r1');
    expect(await peering(b.relay).ledger.pulled('r1')).toBe(1);
  });
});

describe('payment requests', () => {
  it('bills every N tickets, stops at the unpaid limit, resumes once settled', async () => {
    const log = captured();
    const both = await startBoth({ paymentEvery: 2, maxUnpaid: 2, logger: log.logger });
    const { a, b } = both;
    await redeem(b.relay, both.ticket(a).text);
    expect(await peering(b.relay).ledger.balance('r1')).toMatchObject({ unbilled: 1, billed: 0 });
    await redeem(b.relay, both.ticket(a).text);
    await peering(b.relay).syncPeer('r1');

    const r2 = await peering(b.relay).ledger.balance('r1');
    expect(r2).toMatchObject({ billed: 2, unbilled: 0, unpaidToUs: 2, pendingRequests: 0 });
    const received = await peering(a.relay).ledger.listRequestsIn('r2');
    expect(received).toHaveLength(1);
    expect(received[0]).toMatchObject({ count: 2 });
    expect((await peering(a.relay).ledger.balance('r2')).weOwe).toBe(2);

    // At the limit R2 refuses R1's tickets with 36, and keeps them unspent.
    expect(await statusOf(b.relay)).toMatchObject({
      acceptTickets: false,
      refusing: { reason: 'unpaidLimit', code: 36 },
    });
    const third = both.ticket(a);
    expect(await codeOf(redeem(b.relay, third.text))).toBe(RpcErrorCode.peerNotTrusted);
    expect(await codeOf(redeem(b.relay, third.text))).toBe(RpcErrorCode.peerNotTrusted);
    expect(await running(b.relay).tickets.store.isSpent(third.serial)).toBe(false);
    expect(await statusOf(b.relay)).toMatchObject({
      acceptTickets: false,
      refusing: { reason: 'unpaidLimit', code: 36 },
      refused: { unpaidLimit: 2, offline: 0, peerRefused: 0, spent: 0 },
    });
    const metrics = await metricsOf(b.relay);
    expect(metrics.get('powbridge_peer_accepting{peer="r1"}')).toBe(0);
    expect(metrics.get('powbridge_peer_refusing{peer="r1",reason="unpaid_limit"}')).toBe(1);
    expect(metrics.get('powbridge_peer_refusals_total{peer="r1",reason="unpaid_limit"}')).toBe(2);

    // R1's operator settles; R1's sync delivers it; R2 accepts again.
    await peering(a.relay).ledger.recordPaid(
      'r2',
      newId(),
      2,
      'operator',
      Math.floor(Date.now() / 1000),
    );
    await peering(a.relay).syncPeer('r2');
    expect(await peering(b.relay).ledger.balance('r1')).toMatchObject({
      settledToUs: 2,
      unpaidToUs: 0,
    });
    expect(await peering(a.relay).ledger.balance('r2')).toMatchObject({
      weOwe: 0,
      pendingSettlements: 0,
    });
    expect(await codeOf(redeem(b.relay, third.text))).toBe('ok');
    expect(await statusOf(b.relay)).toMatchObject({ acceptTickets: true, refusing: null });
    expect((await metricsOf(b.relay)).get('powbridge_peer_accepting{peer="r1"}')).toBe(1);
    // The log says when the refusing started and ended, not once per refused ticket.
    const said = log.lines.filter((l) => /the peer's tickets/.test(l.msg));
    expect(said).toMatchObject([
      { msg: "refusing the peer's tickets", peer: 'r1', reason: 'unpaidLimit', code: 36 },
      { msg: "accepting the peer's tickets again", peer: 'r1' },
    ]);
  });

  it('settles by work: tickets of the creditor earned by mining for it, verified and spent there', async () => {
    const both = await startBoth({ paymentEvery: 2, maxUnpaid: 2 });
    const { a, b } = both;
    await redeem(b.relay, both.ticket(a).text);
    await redeem(b.relay, both.ticket(a).text);
    await peering(b.relay).syncPeer('r1');
    expect((await peering(a.relay).ledger.balance('r2')).weOwe).toBe(2);

    // R1 mined at R2 and holds two R2 tickets; one of them was already spent at R2.
    const good = both.ticket(b);
    const used = both.ticket(b);
    await redeem(b.relay, used.text);
    const id = newId();
    const now = Math.floor(Date.now() / 1000);
    await peering(a.relay).ledger.recordPaid('r2', id, 2, 'work', now, [good.text, used.text]);
    await peering(a.relay).syncPeer('r2');

    // Only the good ticket counts, on both sides, and R2 spent it (it cannot buy priority now).
    expect(await peering(b.relay).ledger.balance('r1')).toMatchObject({
      settledToUs: 1,
      unpaidToUs: 1,
    });
    expect(await peering(a.relay).ledger.balance('r2')).toMatchObject({
      settledByUs: 1,
      weOwe: 1,
      pendingSettlements: 0,
    });
    expect((await running(b.relay).tickets.store.lookup(good.serial))?.origin).toBe('r1');
    expect(await codeOf(redeem(b.relay, good.text))).toBe(RpcErrorCode.ticketSpent);
    // A 'work' settlement must carry its tickets.
    await expect(peering(a.relay).ledger.recordPaid('r2', newId(), 1, 'work', now)).rejects.toThrow(
      /exactly/,
    );
  });

  it("a payment request with a wrong digest or for another relay's tickets is refused", async () => {
    pair = await startPeeredRelays();
    const { a, b } = pair;
    await pair.start(a);
    await pair.start(b);
    // Sent as R2 would send it: signed by R2's identity, through R1's peer API.
    const asR2 = new PeerClient({
      self: running(b.relay).tickets.keys.identity,
      peer: { name: 'r1', url: `http://127.0.0.1:${a.port}`, identity: a.identity },
      timeoutMs: 5_000,
      clockSkewSeconds: 60,
      now: () => Date.now() / 1000,
    });
    const own = running(b.relay).tickets.keys.ticketKeys()[0]!.keyId; // R2's key, not R1's
    const serial = randomBytes(32);
    const bill = (keyId: string, digest: string) =>
      asR2.call(
        'POST',
        `${PEER_PREFIX}/payment-request`,
        {
          id: newId(),
          count: 1,
          digest,
          period: { from: 1, to: 2 },
          serials: [{ serial: serial.toString('hex'), keyId, day: 1 }],
        },
        paymentResponse,
      );
    await expect(bill(own, '00'.repeat(32))).rejects.toMatchObject({
      status: 400,
      code: 'bad_digest',
    });
    await expect(bill(own, serialsDigest([serial]))).rejects.toMatchObject({
      status: 400,
      code: 'not_our_tickets',
    });
    const r1 = peering(a.relay);
    expect(await r1.ledger.listRequestsIn('r2')).toHaveLength(0);
  });
});
