import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import type { z } from 'zod';
import { type PeerConfig, peerConfigSchema } from '../../src/peers/peer-config.js';
import { PeerApiError, PeerHandlers } from '../../src/peers/peer-handlers.js';
import { SqlitePeerLedger } from '../../src/peers/peer-ledger.js';
import { type PeerLedger, serialsDigest } from '../../src/storage/peer-ledger.js';
import {
  MAX_SPENT_PAGE,
  paymentRequest,
  paymentResponse,
  reserveRequest,
  reserveResponse,
  settleRequest,
  settleResponse,
  spentQuery,
  spentResponse,
} from '../../src/peers/peer-messages.js';
import { PeerRoster } from '../../src/peers/peer-roster.js';
import { SpendReplicator } from '../../src/peers/replication.js';
import { encodePoint } from '../../src/tickets/group.js';
import { makeIdentity } from '../../src/tickets/key-format.js';
import { Redeemer } from '../../src/tickets/redeemer.js';
import { generateSignerKey } from '../../src/tickets/scheme.js';
import { SpentStore } from '../../src/tickets/spent-store.js';
import { anyJson, fuzz, fuzzAsync, hexOf, mutatedRecord } from '../helpers/fuzz.js';
import { acceptingKeyring, csprng, issueTicket } from '../helpers/ticket-issue.js';

/**
 * The peer API's bodies (src/peers/peer-messages.ts) and what a proven peer's request does
 * (src/peers/peer-handlers.ts), as peer-api.ts runs them once the signature checked out: the
 * body through its schema, then the handler, over a real spent store and ledger. The
 * authentication in front is not fuzzed here (it is its own layer). Schemas never throw; a
 * handler answers a body its response schema accepts, or refuses with a PeerApiError (a 4xx
 * and a snake_case code); anything else would be a 500.
 */

const DAY = 20_413;
const NOW = DAY * 86_400 + 3_600;

const ours = generateSignerKey(csprng);
const oursHex = Buffer.from(ours.keyId).toString('hex');
const keyring = acceptingKeyring([
  { publicKey: encodePoint(ours.y), notBeforeDay: DAY - 3, notAfterDay: DAY + 3 },
]);
/** Our tickets a peer may settle with (by work). */
const settlementTickets = [DAY, DAY, DAY - 1].map((day) => issueTicket(ours, day).text);

const peer: PeerConfig = peerConfigSchema.parse({
  name: 'backup-1',
  url: 'http://127.0.0.1:1',
  identity: makeIdentity(randomBytes(32)).publicKeyHex,
});

// ---- bodies near the valid ones ------------------------------------------------------------

/** Few serials, so replays, duplicates and our own spends collide. */
const serial = fc.oneof(
  fc.constantFrom(...[1, 2, 3, 4, 5].map((i) => 'a'.repeat(62) + `0${i}`)),
  hexOf(32),
);
// Mostly our key: bills and reservations of another relay's keys stop at the first check.
const keyId = fc.oneof(
  { weight: 6, arbitrary: fc.constant(oursHex) },
  { weight: 1, arbitrary: hexOf(8) },
);
const day = fc.oneof(
  fc.integer({ min: DAY - 4, max: DAY + 4 }),
  fc.integer({ min: 0, max: 0xffffffff }),
);
const spentSerial = fc.record({ serial, keyId, day });
const unixSeconds = fc.oneof(
  fc.integer({ min: NOW - 86_400, max: NOW + 86_400 }),
  fc.integer({ min: 0, max: 2 ** 40 }),
);
const messageId = fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/);

const reserveBody = fc.record({ serials: fc.array(spentSerial, { minLength: 1, maxLength: 8 }) });

const paymentBody = fc
  .tuple(
    messageId,
    fc.uniqueArray(spentSerial, { minLength: 1, maxLength: 8, selector: (s) => s.serial }),
    unixSeconds,
    unixSeconds,
    fc.boolean(),
  )
  .map(([id, serials, from, to, goodDigest]) => ({
    id,
    count: serials.length,
    digest: goodDigest
      ? serialsDigest(serials.map((s) => Buffer.from(s.serial, 'hex')))
      : 'f'.repeat(64),
    period: { from: Math.min(from, to), to: Math.max(from, to) },
    serials,
  }));

const settleBody = fc.oneof(
  fc.record({
    id: messageId,
    count: fc.integer({ min: 1, max: 1_000_000_000 }),
    method: fc.constant('operator'),
    at: unixSeconds,
  }),
  fc
    .tuple(
      messageId,
      fc.array(
        fc.oneof(
          fc.constantFrom(...settlementTickets),
          fc.string({ minLength: 1, maxLength: 300 }),
        ),
        { minLength: 1, maxLength: 4 },
      ),
      unixSeconds,
    )
    .map(([id, tickets, at]) => ({ id, count: tickets.length, method: 'work', at, tickets })),
);

const spentQueryValue = fc.record(
  {
    after: fc.oneof(fc.nat().map(String), fc.string({ maxLength: 12 }), fc.nat()),
    limit: fc.oneof(
      fc.integer({ min: 1, max: MAX_SPENT_PAGE }).map(String),
      fc.string({ maxLength: 6 }),
    ),
  },
  { requiredKeys: ['after'] },
);

/** A valid body, one field off, or any JSON. */
function near(valid: fc.Arbitrary<Record<string, unknown>>): fc.Arbitrary<unknown> {
  return fc.oneof(
    { weight: 4, arbitrary: valid },
    { weight: 3, arbitrary: mutatedRecord(valid).map(({ value }) => value) },
    { weight: 1, arbitrary: anyJson },
  );
}

// ---- the handlers over a real store and ledger ---------------------------------------------

let dir: string;
let store: SpentStore;
let ledger: PeerLedger;
let handlers: PeerHandlers;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'powbridge-fuzz-peers-'));
  store = SpentStore.open(join(dir, 'spent.sqlite'));
  ledger = SqlitePeerLedger.open(join(dir, 'peers.sqlite'));
  const now = () => NOW;
  const roster = new PeerRoster({
    peers: [peer],
    settings: { requestTimeoutSeconds: 1, clockSkewSeconds: 60 },
    identity: makeIdentity(randomBytes(32)),
    now,
  });
  const redeemer = new Redeemer({ keyring, store });
  handlers = new PeerHandlers({
    ownKeys: {
      acceptedKey: (id) => keyring.acceptedKey(id),
      holdsKey: (id) => id === oursHex,
    },
    store,
    ledger,
    replicator: new SpendReplicator(store, ledger, roster, now),
    spendTicket: (ticket, at, origin) => redeemer.spendForSettlement(ticket, at, origin),
    now,
  });
  // Some of the pool's serials spent here first, so bills and reservations meet our own.
  for (const i of [1, 2]) {
    await store.trySpend({
      serial: Buffer.from('a'.repeat(62) + `0${i}`, 'hex'),
      keyId: ours.keyId,
      day: DAY,
      at: NOW,
    });
  }
});
afterAll(async () => {
  await ledger.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

/** peer-api.ts's route: the schema, then the handler; its answer must fit `response`. */
async function serve<S extends z.ZodType>(
  body: unknown,
  schema: S,
  handle: (value: z.output<S>) => Promise<unknown>,
  response: z.ZodType,
): Promise<void> {
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    expect(parsed.error.issues.length).toBeGreaterThan(0);
    return;
  }
  let answer: unknown;
  try {
    answer = await handle(parsed.data);
  } catch (err) {
    if (!(err instanceof PeerApiError)) throw err;
    expect(err.status).toBeGreaterThanOrEqual(400);
    expect(err.status).toBeLessThan(500);
    expect(err.code).toMatch(/^[a-z_]{1,40}$/);
    return;
  }
  const checked = response.safeParse(answer);
  if (!checked.success) expect.fail(`answer does not fit its schema: ${checked.error.message}`);
}

describe('fuzz: peer API bodies and handlers', () => {
  fuzzAsync(
    'POST /v1/peer/reserve',
    near(reserveBody),
    (body) =>
      serve(
        body,
        reserveRequest,
        async (v) => ({ results: await handlers.reserve(peer, v.serials) }),
        reserveResponse,
      ),
    { weight: 0.5 },
  );

  fuzzAsync(
    'GET /v1/peer/spent',
    near(spentQueryValue),
    (query) =>
      serve(query, spentQuery, (v) => handlers.spentPage(peer, v.after, v.limit), spentResponse),
    { weight: 0.5 },
  );

  fuzzAsync(
    'POST /v1/peer/payment-request',
    near(paymentBody),
    (body) => serve(body, paymentRequest, (v) => handlers.paymentRequest(peer, v), paymentResponse),
    { weight: 0.5 },
  );

  fuzzAsync(
    'POST /v1/peer/settle',
    near(settleBody),
    (body) => serve(body, settleRequest, (v) => handlers.settle(peer, v), settleResponse),
    { weight: 0.3 },
  );

  fuzz('the response schemas take any JSON without throwing', anyJson, (value) => {
    for (const schema of [reserveResponse, spentResponse, paymentResponse, settleResponse]) {
      const parsed = schema.safeParse(value);
      if (!parsed.success) expect(parsed.error.issues.length).toBeGreaterThan(0);
    }
  });
});
