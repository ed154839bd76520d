import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RpcErrorCode } from '../../src/protocol/errors.js';
import { PostgresSessionSlots } from '../../src/storage/postgres-session-slots.js';
import type { SessionSlots, SlotLease, SlotRequest } from '../../src/storage/session-slots.js';
import { csprng, decodePoint, encodePoint } from '../../src/tickets/group.js';
import { type CreditAccount, TicketIssuer } from '../../src/tickets/issuer.js';
import type { Keyring } from '../../src/tickets/keyring.js';
import {
  clientChallenge,
  clientUnblind,
  generateSignerKey,
  InfoPointCache,
  ticketMessage,
  verifierKey,
  verifySignature,
} from '../../src/tickets/scheme.js';
import { usePostgres } from '../helpers/postgres.js';

/**
 * The Abe–Okamoto K-sessions cap across a family (docs/design.md §6.2): three issuers, as three
 * relay instances, each with its own pool on one real PostgreSQL database, sign with one key.
 * The cap holds for the three together, every request is served or refused with 33, and the
 * slots of an instance that died free themselves when they expire on the injected clock.
 */

const key = generateSignerKey(csprng);
const keyring: Keyring = {
  issuingKey: () => ({ key, notBeforeDay: 0, notAfterDay: 1e9 }),
  acceptedKey: () => undefined,
};
const verifier = verifierKey(encodePoint(key.y));
const points = new InfoPointCache();
const KEY_ID = Buffer.from(key.keyId).toString('hex');

const postgres = usePostgres();
let url: string;
let nextId = 1;
const opened: { close(): Promise<void> }[] = [];
const issuers: TicketIssuer[] = [];

beforeAll(async () => {
  url = await postgres().createDatabase();
});

afterEach(async () => {
  for (const issuer of issuers.splice(0)) issuer.closeAll();
  for (const store of opened.splice(0)) await store.close();
});

afterAll(() => {});

async function slots(): Promise<PostgresSessionSlots> {
  const store = await PostgresSessionSlots.open({
    url,
    password: postgres().password,
    poolSize: 3,
  });
  opened.push(store);
  return store;
}

function account(credit = 1): CreditAccount {
  return { id: nextId++, mode: 'tickets', credit };
}

function issuer(
  store: SessionSlots,
  options: Partial<ConstructorParameters<typeof TicketIssuer>[0]>,
) {
  const i = new TicketIssuer({ keyring, price: 1, maxOpenSessions: 2, slots: store, ...options });
  issuers.push(i);
  return i;
}

/** The client's half: open, hold the session `holdMs`, answer, check the signature. */
async function obtain(i: TicketIssuer, a: CreditAccount, holdMs: number): Promise<boolean> {
  const session = await i.open(a);
  const { info, z } = points.get(key.keyId, session.day);
  const commitment = {
    a: decodePoint(Buffer.from(session.a, 'hex'), 'a'),
    b: decodePoint(Buffer.from(session.b, 'hex'), 'b'),
  };
  const msg = ticketMessage(csprng(32));
  const { e, blinding } = clientChallenge(verifier, z, info, commitment, msg, csprng);
  await new Promise((r) => setTimeout(r, holdMs));
  const eHex = Buffer.from(
    new Uint8Array(32).map((_, k) => Number((e >> BigInt(8 * k)) & 0xffn)),
  ).toString('hex');
  const answer = i.finish(a, session.session, eHex);
  const scalar = (hex: string) => BigInt(`0x${Buffer.from(hex, 'hex').reverse().toString('hex')}`);
  const response = {
    r: scalar(answer.r),
    c: scalar(answer.c),
    s: scalar(answer.s),
    d: scalar(answer.d),
  };
  const signature = clientUnblind(verifier, z, commitment, response, blinding);
  return verifySignature(verifier, z, info, msg, signature);
}

/** Sessions open across the family, by the issuers' events; fails the test past `cap`. */
function watchFamily(
  family: TicketIssuer[],
  cap: number,
): { max: () => number; now: () => number } {
  let open = 0;
  let max = 0;
  for (const i of family) {
    i.on('opened', () => {
      open += 1;
      max = Math.max(max, open);
      expect(open).toBeLessThanOrEqual(cap);
    });
    i.on('closed', () => {
      open -= 1;
    });
  }
  return { max: () => max, now: () => open };
}

describe('the K-sessions cap across a family on PostgreSQL', () => {
  it('three instances, K = 2: never more than 2 open at once, and every request is served', async () => {
    const family = [
      issuer(await slots(), { pollIntervalMs: 10, maxWaitMs: 60_000 }),
      issuer(await slots(), { pollIntervalMs: 10, maxWaitMs: 60_000 }),
      issuer(await slots(), { pollIntervalMs: 10, maxWaitMs: 60_000 }),
    ];
    const watch = watchFamily(family, 2);
    // The rows themselves, read over a connection of their own while the requests run.
    const observer = await slots();
    let rowsMax = 0;
    let running = true;
    const sampling = (async () => {
      while (running) {
        const held = await observer.held(
          KEY_ID,
          Math.floor(Date.now() / 86_400_000),
          Date.now() / 1000,
        );
        rowsMax = Math.max(rowsMax, held);
        expect(held).toBeLessThanOrEqual(2);
      }
    })();
    const circuits = Array.from({ length: 24 }, () => account());
    const results = await Promise.all(
      circuits.map((a, n) => obtain(family[n % 3] as TicketIssuer, a, 2 + (n % 4))),
    );
    running = false;
    await sampling;
    expect(results.every(Boolean)).toBe(true);
    expect(circuits.every((a) => a.credit === 0)).toBe(true);
    expect(watch.max()).toBeGreaterThanOrEqual(1);
    expect(rowsMax).toBeLessThanOrEqual(2);
    expect(watch.now()).toBe(0);
    // Every slot went back to the database.
    await Promise.all(opened.map((s) => s.close()));
    opened.splice(0);
    const after = await slots();
    expect(await after.expire(Number.MAX_SAFE_INTEGER / 1000)).toBe(0);
  });

  it('a request that waits past maxWaitMs for the family is refused 33 with retryAfter', async () => {
    const a = issuer(await slots(), { sessionTtlMs: 5_000 });
    const b = issuer(await slots(), { sessionTtlMs: 5_000, pollIntervalMs: 10, maxWaitMs: 100 });
    const c = issuer(await slots(), { sessionTtlMs: 5_000, pollIntervalMs: 10, maxWaitMs: 100 });
    watchFamily([a, b, c], 2);
    // One session on each of two instances: K = 2 is the family's, not each instance's.
    await a.open(account());
    await c.open(account());
    // b holds no session itself: it learns from the database that the family is full.
    await expect(b.open(account())).rejects.toMatchObject({
      code: RpcErrorCode.issuerBusy,
      data: { retryAfter: 5 },
    });
    expect(b.openSessions(KEY_ID, Math.floor(Date.now() / 86_400_000))).toBe(0);
  });

  it("a dead instance's sessions hold their slots until they expire, then free", async () => {
    let clock = 1_900_000_000;
    const now = () => clock;
    const day = Math.floor(clock / 86_400);
    const deadSlots = await slots();
    const dead = issuer(deadSlots, { now, sessionTtlMs: 10_000, slotGraceSeconds: 5 });
    await dead.open(account());
    await dead.open(account());
    // The instance dies: its connections go, its sessions are never answered nor released.
    await deadSlots.close();

    const asked: (SlotLease | null)[] = [];
    let polled: () => void = () => {};
    const aliveSlots = await slots();
    const spy: SessionSlots = {
      acquire: async (request: SlotRequest) => {
        const lease = await aliveSlots.acquire(request);
        asked.push(lease);
        if (asked.length >= 3) polled();
        return lease;
      },
      release: (lease) => aliveSlots.release(lease),
      held: (k, d, t) => aliveSlots.held(k, d, t),
      expire: (t) => aliveSlots.expire(t),
      close: () => aliveSlots.close(),
    };
    const alive = issuer(spy, { now, pollIntervalMs: 10, maxWaitMs: 60_000 });
    const threePolls = new Promise<void>((resolve) => {
      polled = resolve;
    });
    const waiting = alive.open(account());
    await threePolls;
    expect(asked.slice(0, 3)).toEqual([null, null, null]);
    expect(await aliveSlots.held(KEY_ID, day, clock)).toBe(2);
    // Still held just before the end of TTL + grace, free after it.
    clock += 14.9;
    expect(await aliveSlots.held(KEY_ID, day, clock)).toBe(2);
    clock += 0.2;
    const session = await waiting;
    expect(session.day).toBe(day);
    expect(asked.at(-1)).not.toBeNull();
    expect(await aliveSlots.held(KEY_ID, day, clock)).toBe(1);
  });
});
