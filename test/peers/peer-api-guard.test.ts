import { randomBytes } from 'node:crypto';
import fastify, { type FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PeerApiGuard } from '../../src/peers/peer-api-guard.js';
import { registerPeerApi } from '../../src/peers/peer-api.js';
import {
  HEADER_NONCE,
  HEADER_SIGNATURE,
  HEADER_TIMESTAMP,
  type PeerSigner,
  responseSigningBytes,
  signedRequestHeaders,
  verifySigned,
} from '../../src/peers/peer-auth.js';
import { peerConfigSchema } from '../../src/peers/peer-config.js';
import { makeIdentity } from '../../src/tickets/key-format.js';

/**
 * The peer API's answer to requests that do not authenticate (docs/design.md §7): a plain 401
 * with no signature and no log line each, counted by reason; 429 with Retry-After beyond the
 * guard's rates, decided before any signature is checked; and signed answers, as before, for
 * a pinned peer that signs. The clock is injected, so the rates are exact.
 */

const START = 1_700_000_000;
let clock: number;
let app: FastifyInstance;
let guard: PeerApiGuard;
let logLines: { msg: string; refused?: Record<string, number>; total?: number }[];
let signatures: number;
const SPENT_PAGE = { records: [], more: false, head: 0 };

const ours = makeIdentity(randomBytes(32));
/** Our identity, counting the signatures it makes. */
const counted: PeerSigner = {
  publicKeyHex: ours.publicKeyHex,
  sign(message) {
    signatures++;
    return ours.sign(message);
  },
};
const peerKey = makeIdentity(randomBytes(32));
const peer = peerConfigSchema.parse({
  name: 'r2',
  url: 'http://127.0.0.1:1',
  identity: peerKey.publicKeyHex,
});

beforeEach(async () => {
  clock = START;
  signatures = 0;
  logLines = [];
  const logger = pino(
    { level: 'info' },
    { write: (line: string) => void logLines.push(JSON.parse(line) as (typeof logLines)[number]) },
  );
  guard = new PeerApiGuard({
    now: () => clock,
    logger,
    refusalsPerSecond: 2,
    refusalBurstSeconds: 5,
    badSignaturesPerSecond: 1,
    badSignatureBurstSeconds: 3,
  });
  app = fastify();
  registerPeerApi(app, {
    peers: { peerByIdentity: (id) => (id === peer.identity ? peer : undefined) },
    handlers: {
      spentPage: () => Promise.resolve(SPENT_PAGE),
      reserve: () => Promise.resolve([]),
      paymentRequest: () => Promise.resolve({ recorded: false, known: 0 }),
      settle: () => Promise.resolve({ recorded: false, accepted: 0 }),
    },
    identity: counted,
    clockSkewSeconds: 60,
    now: () => clock,
    guard,
    logger,
  });
  await app.ready();
});

afterEach(async () => {
  guard.close();
  await app.close();
});

const PATH = '/v1/peer/spent?after=0&limit=10';

/** Headers of a GET (of the spent log by default) signed by `signer` claiming to be `claimed`. */
function signedHeaders(
  options: {
    signer?: PeerSigner;
    claimed?: string;
    timestamp?: number;
    nonce?: string;
    path?: string;
  } = {},
): Record<string, string> {
  const signer = options.signer ?? peerKey;
  const claimed = options.claimed ?? signer.publicKeyHex;
  const timestamp = options.timestamp ?? clock;
  const nonce = options.nonce ?? randomBytes(16).toString('hex');
  return signedRequestHeaders(signer, {
    method: 'GET',
    path: options.path ?? PATH,
    to: ours.publicKeyHex,
    from: claimed,
    timestamp,
    nonce,
    body: '',
  });
}

const get = (headers: Record<string, string> = {}) =>
  app.inject({ method: 'GET', url: PATH, headers });

const summaries = () => logLines.filter((l) => l.msg.startsWith('peer API refused'));

describe('unauthenticated peer requests', () => {
  it('get a plain 401 each, no signature, no log line each; counted by reason', async () => {
    const stranger = makeIdentity(randomBytes(32));
    const cases: [string, Record<string, string>][] = [
      ['missing_headers', {}],
      ['missing_headers', { ...signedHeaders(), [HEADER_NONCE]: 'zz' }],
      ['unknown_peer', signedHeaders({ signer: stranger })],
      ['stale_timestamp', signedHeaders({ timestamp: START - 3600 })],
      ['bad_signature', { ...signedHeaders(), [HEADER_SIGNATURE]: 'ab' }],
      ['bad_signature', signedHeaders({ signer: stranger, claimed: peer.identity })],
    ];
    for (const [code, headers] of cases) {
      const answer = await get(headers);
      expect(answer.statusCode, code).toBe(401);
      expect(answer.json(), code).toMatchObject({ error: { code } });
      expect(answer.headers[HEADER_SIGNATURE], code).toBeUndefined();
      expect(answer.headers[HEADER_TIMESTAMP], code).toBeUndefined();
    }
    expect(signatures).toBe(0);
    expect(guard.status().refused).toEqual({
      missingHeaders: 2,
      unknownPeer: 1,
      staleTimestamp: 1,
      badSignature: 2,
      replay: 0,
      rateLimited: 0,
    });
    // One summary for all of them (the first refusal), not a line each.
    expect(logLines).toHaveLength(1);
    expect(summaries()[0]).toMatchObject({ total: 1, refused: { missing_headers: 1 } });
    expect(JSON.stringify(logLines)).not.toContain(peer.identity);
    expect(JSON.stringify(logLines)).not.toContain(stranger.publicKeyHex);

    // A minute on, the next refusal brings one line with what moved since.
    clock += 61;
    await get();
    expect(summaries()).toHaveLength(2);
    expect(summaries()[1]).toMatchObject({
      total: 6,
      refused: { missing_headers: 2, unknown_peer: 1, stale_timestamp: 1, bad_signature: 2 },
    });
    // Closing sums up what the last line did not cover.
    await get();
    guard.close();
    expect(summaries()).toHaveLength(3);
    expect(summaries()[2]).toMatchObject({ total: 1, refused: { missing_headers: 1 } });
  });

  it('are answered 429 with Retry-After beyond the rate, and 401 again once it refills', async () => {
    // 2 a second, 5 seconds of them: 10 plain refusals, then 429.
    const answers = [];
    for (let i = 0; i < 30; i++) answers.push(await get());
    expect(answers.slice(0, 10).every((a) => a.statusCode === 401)).toBe(true);
    const limited = answers.slice(10);
    expect(limited.every((a) => a.statusCode === 429)).toBe(true);
    expect(limited[0]?.headers['retry-after']).toBe('1');
    expect(limited[0]?.json()).toMatchObject({ error: { code: 'rate_limited' } });
    expect(limited.every((a) => a.headers[HEADER_SIGNATURE] === undefined)).toBe(true);
    expect(guard.status().refused).toMatchObject({ missingHeaders: 10, rateLimited: 20 });
    expect(guard.refused()).toMatchObject({ missing_headers: 10, rate_limited: 20 });
    expect(summaries()).toHaveLength(1);
    expect(signatures).toBe(0);

    clock += 1;
    expect((await get()).statusCode).toBe(401);
    expect((await get()).statusCode).toBe(401);
    expect((await get()).statusCode).toBe(429);
  });

  it('a flood of garbage does not keep a pinned peer out', async () => {
    for (let i = 0; i < 40; i++) await get();
    expect((await get()).statusCode).toBe(429);
    const answer = await get(signedHeaders());
    expect(answer.statusCode).toBe(200);
    expect(answer.json()).toEqual(SPENT_PAGE);
  });

  it('forged signatures under a pinned identity are checked at most at their rate', async () => {
    const forger = makeIdentity(randomBytes(32));
    const forged = () => get(signedHeaders({ signer: forger, claimed: peer.identity }));
    // 1 a second, 3 seconds of them: 3 signature checks fail, then 429 before checking.
    const codes = [];
    for (let i = 0; i < 6; i++) codes.push((await forged()).statusCode);
    expect(codes).toEqual([401, 401, 401, 429, 429, 429]);
    expect(guard.status().refused).toMatchObject({ badSignature: 3, rateLimited: 3 });
    // While it lasts, the pinned peer is slowed too (we cannot tell it from a forger unchecked) …
    expect((await get(signedHeaders())).statusCode).toBe(429);
    // … and a signature that verifies costs the bucket nothing.
    clock += 1;
    for (let i = 0; i < 5; i++) expect((await get(signedHeaders())).statusCode).toBe(200);
    expect((await forged()).statusCode).toBe(401);
    expect((await forged()).statusCode).toBe(429);
  });

  it('a replayed nonce is refused plainly, without checking its signature again', async () => {
    const headers = signedHeaders();
    expect((await get(headers)).statusCode).toBe(200);
    const replay = await get(headers);
    expect(replay.statusCode).toBe(401);
    expect(replay.json()).toMatchObject({ error: { code: 'replay' } });
    expect(replay.headers[HEADER_SIGNATURE]).toBeUndefined();
    expect(guard.status().refused.replay).toBe(1);
    expect(signatures).toBe(1);
  });
});

describe('authenticated peer requests', () => {
  /** Whether `answer` is signed by our identity for the request sent with `headers`. */
  const signedFor = (
    answer: Awaited<ReturnType<typeof get>>,
    headers: Record<string, string>,
  ): boolean =>
    verifySigned(
      ours.publicKeyHex,
      responseSigningBytes({
        status: answer.statusCode,
        from: ours.publicKeyHex,
        to: peer.identity,
        requestNonce: headers[HEADER_NONCE] ?? '',
        timestamp: Number(answer.headers[HEADER_TIMESTAMP]),
        body: answer.body,
      }),
      String(answer.headers[HEADER_SIGNATURE]),
    );

  it('get signed answers, refusals included', async () => {
    const headers = signedHeaders();
    const answer = await get(headers);
    expect(answer.statusCode).toBe(200);
    expect(answer.json()).toEqual(SPENT_PAGE);
    expect(signedFor(answer, headers)).toBe(true);

    // A bad query from a pinned peer is its mistake to fix: told why, signed.
    const path = '/v1/peer/spent?after=x';
    const badQuery = signedHeaders({ path });
    const refused = await app.inject({ method: 'GET', url: path, headers: badQuery });
    expect(refused.statusCode).toBe(400);
    expect(refused.json()).toMatchObject({ error: { code: 'bad_request' } });
    expect(signedFor(refused, badQuery)).toBe(true);
    expect(signatures).toBe(2);
    expect(guard.status().refused).toEqual({
      missingHeaders: 0,
      unknownPeer: 0,
      staleTimestamp: 0,
      badSignature: 0,
      replay: 0,
      rateLimited: 0,
    });
    expect(logLines).toEqual([]);
  });
});
