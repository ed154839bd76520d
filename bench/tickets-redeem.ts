import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodePoint, Point } from '../src/tickets/group.js';
import { type AcceptedKey, type Keyring, utcDay } from '../src/tickets/keyring.js';
import { Redeemer, type RedeemerOptions } from '../src/tickets/redeemer.js';
import type { RsaPrivateKey } from '../src/tickets/rsa-scheme.js';
import { generateSignerKey, InfoPointCache, infoPoint, ticketInfo } from '../src/tickets/scheme.js';
import { SpentStore } from '../src/tickets/spent-store.js';
import { csprng, issueTicket } from '../test/helpers/ticket-issue.js';
import { issueTicketV2, rsaKeyring } from '../test/helpers/ticket-v2.js';

/** Redemption throughput for bench/tickets.ts: verify + fsync'd check-and-insert per ticket. */

/** A cache that hands out z without its window table (the "no tables" case). */
class UntabledInfoPoints extends InfoPointCache {
  override get(keyId: Uint8Array, day: number) {
    const info = ticketInfo(keyId, day);
    return { info, z: infoPoint(info) };
  }
}

/** Tickets/s through a Redeemer on a fresh spent store; `concurrent` > 1 group-commits. */
async function redeemAll(
  tickets: string[],
  concurrent: number,
  options: Omit<RedeemerOptions, 'store'>,
): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'powbridge-bench-'));
  const store = SpentStore.open(join(dir, 'spent.sqlite'));
  try {
    const redeemer = new Redeemer({ ...options, store });
    const now = Date.now() / 1000;
    const start = performance.now();
    if (concurrent === 1) {
      for (const ticket of tickets) await redeemer.redeem(ticket, now);
    } else {
      for (let i = 0; i < tickets.length; i += concurrent) {
        await Promise.all(
          tickets.slice(i, i + concurrent).map((t) => redeemer.redeemBatched(t, now)),
        );
      }
    }
    return (tickets.length * 1000) / (performance.now() - start);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** v1 (Abe–Okamoto) tickets/s, with or without the window tables. */
export function redemptionRate(count: number, tables: boolean, concurrent = 1): Promise<number> {
  const key = generateSignerKey(csprng);
  const today = utcDay(Date.now() / 1000);
  const publicKey = encodePoint(key.y);
  const keyring: Keyring = {
    issuingKey: () => null,
    acceptedKey: (): AcceptedKey => ({
      // Without tables y is decoded afresh, as if nothing were cached.
      key: tables
        ? { y: key.y, keyId: key.keyId }
        : { y: Point.fromBytes(publicKey), keyId: key.keyId },
      owner: 'self',
      notBeforeDay: today - 1,
      notAfterDay: today + 1,
    }),
  };
  const tickets = Array.from({ length: count }, () => issueTicket(key, today).text);
  return redeemAll(tickets, concurrent, {
    keyring,
    ...(tables ? {} : { infoPoints: new UntabledInfoPoints() }),
  });
}

/** v2 (RSA) tickets/s: RsaVerifier (the day's derived key cached) and the same spend. */
export function rsaRedemptionRate(
  key: RsaPrivateKey,
  count: number,
  concurrent = 1,
): Promise<number> {
  const today = utcDay(Date.now() / 1000);
  const tickets = Array.from({ length: count }, () => issueTicketV2(key, today).text);
  return redeemAll(tickets, concurrent, { keyring: rsaKeyring(null, [{ key }]) });
}
