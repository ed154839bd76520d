import { setTimeout as sleep } from 'node:timers/promises';
import type { BlindSigner } from '../src/tickets/blind-signer.js';
import { csprng, encodeScalar } from '../src/tickets/group.js';
import { type CreditAccount, TicketIssuer } from '../src/tickets/issuer.js';
import { utcDay } from '../src/tickets/keyring.js';
import { RsaIssuer } from '../src/tickets/rsa-issuer.js';
import type { RsaPrivateKey } from '../src/tickets/rsa-scheme.js';
import { generateSignerKey } from '../src/tickets/scheme.js';
import { sampleBlocks } from './tickets-pool.js';

/**
 * Issuance under latency for bench/tickets.ts (issue 14): `circuits` circuits each ask for
 * tickets back to back, every message crossing a one-way delay of rtt/2 (a timer). RSA takes
 * one round trip per ticket (ticket.issue through RsaIssuer, signed in the pool). Abe–Okamoto
 * takes two (ticket.open, then ticket.finish), and its session slot, K per (key, day), is held
 * from open to finish: a full round trip. Tickets per second counted over a window after a
 * warm-up; the client's own computation is not simulated (it runs on the clients' machines).
 */

export interface LatencyOptions {
  circuits: number;
  rttMs: number;
  warmupMs: number;
  windowMs: number;
}

const BIG_CREDIT = 1e12;

function accounts(count: number): CreditAccount[] {
  return Array.from({ length: count }, (_, id) => ({ id, mode: 'tickets', credit: BIG_CREDIT }));
}

/** Runs every circuit's loop; `stop` is called when the window closes, to free waiters. */
async function ticketsPerSecond(
  options: LatencyOptions,
  issueOne: (account: CreditAccount, hop: () => Promise<void>) => Promise<void>,
  stop: (all: CreditAccount[]) => void,
): Promise<number> {
  const hop = () => sleep(options.rttMs / 2);
  const all = accounts(options.circuits);
  const start = performance.now();
  const windowStart = start + options.warmupMs;
  const end = windowStart + options.windowMs;
  let counted = 0;
  const timer = setTimeout(() => stop(all), end - start);
  const circuit = async (account: CreditAccount): Promise<void> => {
    while (performance.now() < end) {
      try {
        await issueOne(account, hop);
      } catch (err) {
        if (performance.now() >= end) return; // stopped while waiting
        throw err;
      }
      const now = performance.now();
      if (now >= windowStart && now < end) counted++;
    }
  };
  try {
    await Promise.all(all.map(circuit));
  } finally {
    clearTimeout(timer);
  }
  return (counted * 1000) / options.windowMs;
}

/** RSA: request → RsaIssuer.issue (the pool signs) → reply. */
export function rsaUnderLatency(
  key: RsaPrivateKey,
  signer: BlindSigner,
  options: LatencyOptions,
): Promise<number> {
  const now = () => Date.now() / 1000;
  const issuing = { key, notBeforeDay: 0, notAfterDay: 0xffffffff };
  const issuer = new RsaIssuer({
    keyring: { issuingRsaKey: () => issuing },
    signer,
    price: 1,
    now,
  });
  const blocks = sampleBlocks(64).map((b) => Buffer.from(b).toString('hex'));
  const keyId = Buffer.from(key.keyId).toString('hex');
  let i = 0;
  return ticketsPerSecond(
    options,
    async (account, hop) => {
      await hop();
      const blindedMsg = blocks[i++ % blocks.length] ?? '';
      await issuer.issue(account, { keyId, day: utcDay(now()), blindedMsg });
      await hop();
    },
    () => {},
  );
}

/** Abe–Okamoto with K open sessions: open → reply, finish → reply; the slot held in between. */
export function aoUnderLatency(maxOpenSessions: number, options: LatencyOptions): Promise<number> {
  const key = generateSignerKey(csprng);
  const issuer = new TicketIssuer({
    keyring: {
      issuingKey: () => ({ key, notBeforeDay: 0, notAfterDay: 0xffffffff }),
      acceptedKey: () => undefined,
    },
    price: 1,
    maxOpenSessions,
    // Every circuit may wait for a slot as long as it takes: AO at its best.
    maxQueued: options.circuits,
    maxWaitMs: 3_600_000,
  });
  const e = Buffer.from(encodeScalar(12345n)).toString('hex');
  return ticketsPerSecond(
    options,
    async (account, hop) => {
      await hop();
      const { session } = await issuer.open(account);
      await hop(); // the commitment travels to the client...
      await hop(); // ...and its challenge comes back, the slot held all along
      issuer.finish(account, session, e);
      await hop();
    },
    (all) => {
      for (const account of all) issuer.circuitClosed(account);
    },
  );
}
