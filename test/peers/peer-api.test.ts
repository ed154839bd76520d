import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  HEADER_NONCE,
  HEADER_PEER,
  HEADER_SIGNATURE,
  HEADER_TIMESTAMP,
  type PeerSigner,
  ReplayGuard,
  responseSigningBytes,
  sign,
  signedRequestHeaders,
  verifySigned,
} from '../../src/peers/peer-auth.js';
import { PeerClient, PeerRefusedError, PeerUnreachableError } from '../../src/peers/peer-client.js';
import { peerApiStatusSchema } from '../../src/peers/peer-api-guard.js';
import { spentResponse } from '../../src/peers/peer-messages.js';
import { makeIdentity } from '../../src/tickets/key-format.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseMetrics } from '../helpers/metrics-text.js';
import { type PeeredRelays, startPeeredRelays } from './peered-relays.js';

/**
 * The peer API refuses whatever a pinned peer did not sign, with a clear error that costs it
 * no signature: unknown peers, bad signatures, stale timestamps and replays get a plain 401
 * (docs/design.md §7); what a pinned peer signed is answered, signed.
 */

let pair: PeeredRelays;
/** Everything both relays log, one parsed line each. */
const logLines: { msg: string; component?: string }[] = [];
let r2: PeerSigner; // R2's real identity, read from its key file
let r1Url: string;
let r1Identity: string;

beforeAll(async () => {
  const logger = pino(
    { level: 'debug' },
    { write: (line: string) => void logLines.push(JSON.parse(line) as (typeof logLines)[number]) },
  );
  pair = await startPeeredRelays({ logger });
  await pair.start(pair.a);
  r1Url = `http://127.0.0.1:${pair.a.port}`;
  r1Identity = pair.a.identity;
  const file = JSON.parse(readFileSync(join(pair.b.dir, 'keys', 'identity.json'), 'utf8')) as {
    secretKey: string;
  };
  r2 = makeIdentity(Buffer.from(file.secretKey, 'hex'));
  expect(r2.publicKeyHex).toBe(pair.b.identity);
});
afterAll(async () => {
  await pair.close();
});

interface Sent {
  status: number;
  body: { error?: { code: string; message: string } } & Record<string, unknown>;
  /** The answer carries signature headers at all. */
  signed: boolean;
  verified: boolean;
}

/** A hand-made signed request, so each field can be broken on purpose. */
async function send(options: {
  signer?: PeerSigner;
  claimed?: string;
  timestamp?: number;
  nonce?: string;
  path?: string;
  signedPath?: string;
  body?: string;
}): Promise<Sent> {
  const signer = options.signer ?? r2;
  const claimed = options.claimed ?? signer.publicKeyHex;
  const timestamp = options.timestamp ?? Math.floor(Date.now() / 1000);
  const nonce = options.nonce ?? randomBytes(16).toString('hex');
  const path = options.path ?? '/v1/peer/spent?after=0&limit=10';
  const body = options.body ?? '';
  const method = body === '' ? 'GET' : 'POST';
  const res = await fetch(`${r1Url}${path}`, {
    method,
    headers: {
      ...signedRequestHeaders(signer, {
        method,
        path: options.signedPath ?? path,
        to: r1Identity,
        from: claimed,
        timestamp,
        nonce,
        body,
      }),
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    ...(body ? { body } : {}),
  });
  const text = await res.text();
  const verified = verifySigned(
    r1Identity,
    responseSigningBytes({
      status: res.status,
      from: r1Identity,
      to: claimed,
      requestNonce: nonce,
      timestamp: Number(res.headers.get(HEADER_TIMESTAMP)),
      body: text,
    }),
    res.headers.get(HEADER_SIGNATURE) ?? '',
  );
  const signed = res.headers.has(HEADER_SIGNATURE) || res.headers.has(HEADER_TIMESTAMP);
  return { status: res.status, body: JSON.parse(text) as Sent['body'], signed, verified };
}

describe('peer API authentication', () => {
  it('answers a correctly signed request from a pinned peer, signed', async () => {
    const answer = await send({});
    expect(answer.status).toBe(200);
    expect(answer.verified).toBe(true);
    expect(spentResponse.parse(answer.body)).toEqual({ records: [], more: false, head: 0 });
  });

  it('refuses an unknown peer, unsigned', async () => {
    const stranger = makeIdentity(randomBytes(32));
    const answer = await send({ signer: stranger });
    expect(answer).toMatchObject({
      status: 401,
      body: { error: { code: 'unknown_peer' } },
      signed: false,
    });
  });

  it('refuses a signature by another key under a pinned identity', async () => {
    const forger = makeIdentity(randomBytes(32));
    const answer = await send({ signer: forger, claimed: r2.publicKeyHex });
    expect(answer).toMatchObject({
      status: 401,
      body: { error: { code: 'bad_signature' } },
      signed: false,
    });
  });

  it('refuses a request whose signed path differs from the one sent', async () => {
    const answer = await send({ signedPath: '/v1/peer/spent?after=5&limit=10' });
    expect(answer).toMatchObject({ body: { error: { code: 'bad_signature' } }, signed: false });
  });

  it('refuses stale and future timestamps', async () => {
    const now = Math.floor(Date.now() / 1000);
    for (const timestamp of [now - 3600, now + 3600]) {
      const answer = await send({ timestamp });
      expect(answer).toMatchObject({
        status: 401,
        body: { error: { code: 'stale_timestamp' } },
        signed: false,
      });
    }
  });

  it('refuses a replayed request', async () => {
    const nonce = randomBytes(16).toString('hex');
    const timestamp = Math.floor(Date.now() / 1000);
    expect((await send({ nonce, timestamp })).status).toBe(200);
    const replay = await send({ nonce, timestamp });
    expect(replay).toMatchObject({ status: 401, body: { error: { code: 'replay' } } });
    expect(replay.signed).toBe(false);
  });

  it('refuses missing headers unsigned, and a bad body of a pinned peer signed', async () => {
    const res = await fetch(`${r1Url}/v1/peer/spent?after=0`);
    expect(res.status).toBe(401);
    expect(res.headers.has(HEADER_SIGNATURE)).toBe(false);
    expect(((await res.json()) as Sent['body']).error?.code).toBe('missing_headers');
    const bad = await send({ path: '/v1/peer/reserve', body: '{"serials":[]}' });
    expect(bad).toMatchObject({ status: 400, verified: true });
    expect(bad.body.error?.message).toMatch(/serials/);
  });

  it("answers unknown_key when asked to reserve a serial of a key that is not R1's", async () => {
    const serial = randomBytes(32).toString('hex');
    const answer = await send({
      path: '/v1/peer/reserve',
      body: JSON.stringify({ serials: [{ serial, keyId: '00'.repeat(8), day: 1 }] }),
    });
    expect(answer).toMatchObject({
      status: 200,
      verified: true,
      body: { results: [{ serial, result: 'unknown_key' }] },
    });
  });

  it("PeerClient reads R1's plain 401 as a refusal: it did not authenticate us", async () => {
    const client = new PeerClient({
      self: r2,
      // R1's address, but pinned to some other identity: the request is addressed to that one.
      peer: { name: 'r1', url: r1Url, identity: makeIdentity(randomBytes(32)).publicKeyHex },
      timeoutMs: 2000,
      clockSkewSeconds: 60,
      now: () => Date.now() / 1000,
    });
    const refused = client.call('GET', '/v1/peer/spent?after=0', undefined, spentResponse);
    await expect(refused).rejects.toBeInstanceOf(PeerRefusedError);
    await expect(refused).rejects.toMatchObject({ status: 401, code: 'bad_signature' });
    await expect(refused).rejects.toThrow(/did not authenticate our request \(bad_signature/);
  });
});

describe('PeerClient against a scripted peer', () => {
  let server: Server;
  let url: string;
  let answer: { status: number; headers: Record<string, string>; body: string };
  const pinned = makeIdentity(randomBytes(32));

  beforeAll(async () => {
    server = createServer((_req, res) =>
      res.writeHead(answer.status, answer.headers).end(answer.body),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  const call = () =>
    new PeerClient({
      self: r2,
      peer: { name: 'r1', url, identity: pinned.publicKeyHex },
      timeoutMs: 2000,
      clockSkewSeconds: 60,
      now: () => Date.now() / 1000,
    }).call('GET', '/v1/peer/spent?after=0', undefined, spentResponse);

  it('takes an answer signed by another key as no answer', async () => {
    const body = JSON.stringify({ records: [], more: false, head: 0 });
    const timestamp = String(Math.floor(Date.now() / 1000));
    answer = {
      status: 200,
      headers: {
        [HEADER_TIMESTAMP]: timestamp,
        [HEADER_SIGNATURE]: sign(makeIdentity(randomBytes(32)), new Uint8Array(1)),
      },
      body,
    };
    await expect(call()).rejects.toBeInstanceOf(PeerUnreachableError);
    await expect(call()).rejects.toThrow(/not signed by its pinned identity/);
  });

  it('takes an unsigned 429 as no answer, and an unsigned 200 as no answer', async () => {
    answer = { status: 429, headers: { 'retry-after': '1' }, body: '{}' };
    await expect(call()).rejects.toBeInstanceOf(PeerUnreachableError);
    await expect(call()).rejects.toThrow(/over its rate of unauthenticated requests \(429\)/);
    answer = {
      status: 200,
      headers: {},
      body: JSON.stringify({ records: [], more: false, head: 0 }),
    };
    await expect(call()).rejects.toThrow(/answer 200 is not signed by its pinned identity/);
  });

  it("reads an unsigned 401's code only if it is a plain word", async () => {
    answer = {
      status: 401,
      headers: {},
      body: JSON.stringify({ error: { code: 'Evil\nline', message: 'x' } }),
    };
    await expect(call()).rejects.toMatchObject({ status: 401, code: 'unauthenticated' });
    answer = { status: 401, headers: {}, body: 'not json' };
    await expect(call()).rejects.toMatchObject({ status: 401, code: 'unauthenticated' });
  });
});

// Last of the relay tests: it spends R1's allowance of plain refusals.
describe('a flood of unauthenticated requests', () => {
  it('gets plain 401s then 429s, counted in status and metrics, not logged one by one', async () => {
    const before = logLines.length;
    const stranger = makeIdentity(randomBytes(32));
    const garbage = (i: number) =>
      i % 3 === 0
        ? fetch(`${r1Url}/v1/peer/spent?after=0`)
        : fetch(`${r1Url}/v1/peer/reserve`, {
            method: 'POST',
            headers: {
              [HEADER_PEER]: i % 3 === 1 ? stranger.publicKeyHex : r2.publicKeyHex,
              [HEADER_TIMESTAMP]: String(Math.floor(Date.now() / 1000)),
              [HEADER_NONCE]: randomBytes(16).toString('hex'),
              [HEADER_SIGNATURE]: randomBytes(64).toString('hex'),
              'content-type': 'application/json',
            },
            body: '{"serials":[]}',
          });
    const answers = await Promise.all(Array.from({ length: 300 }, (_, i) => garbage(i)));
    const statuses = answers.map((a) => a.status);
    expect(statuses.every((s) => s === 401 || s === 429)).toBe(true);
    // More than the guard lets through at once (100 plain refusals, 20 failed signatures).
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(0);
    expect(answers.some((a) => a.headers.has(HEADER_SIGNATURE))).toBe(false);
    for (const a of answers.filter((a) => a.status === 429)) {
      expect(a.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
    }
    await Promise.all(answers.map((a) => a.text()));

    const relay = pair.a.relay;
    if (!relay) throw new Error('r1 not running');
    const status = (await relay.app.inject('/v1/status')).json<{ peerApi: unknown }>();
    const { refused } = peerApiStatusSchema.parse(status.peerApi);
    const total = Object.values(refused).reduce((a, b) => a + b, 0);
    // Every one of them, and the earlier tests' refusals (a few) beside them.
    expect(total).toBeGreaterThanOrEqual(300);
    expect(refused.rateLimited).toBe(statuses.filter((s) => s === 429).length);
    const metrics = parseMetrics((await relay.app.inject('/metrics')).body);
    expect(metrics.get('powbridge_peer_api_refused_total{reason="rate_limited"}')).toBe(
      refused.rateLimited,
    );
    expect(metrics.get('powbridge_peer_api_refused_total{reason="missing_headers"}')).toBe(
      refused.missingHeaders,
    );

    // No line per request: at most a summary a minute (this test takes far less). The first
    // refusal of this file (an earlier test) brought the first summary.
    const summaries = logLines.filter((l) => l.msg.startsWith('peer API refused'));
    expect(summaries[0]).toMatchObject({ component: 'peer-api' });
    const lines = logLines.slice(before).filter((l) => l.component === 'peer-api');
    expect(lines.length).toBeLessThanOrEqual(1);
    expect(JSON.stringify(logLines)).not.toContain(stranger.publicKeyHex);
  });
});

describe('ReplayGuard', () => {
  it('forgets a nonce only after its timestamp left the window, and stays bounded', () => {
    const guard = new ReplayGuard(60, 2);
    guard.use('p', 'n1', 1000, 1000);
    expect(() => guard.use('p', 'n1', 1000, 1059)).toThrow(/replayed/);
    guard.use('p', 'n2', 1000, 1000);
    expect(() => guard.use('p', 'n3', 1000, 1001)).toThrow(/too many/);
    guard.use('p', 'n1', 1000, 1061); // n1 and n2 expired: swept, then n1 is new again
    expect(guard.size).toBe(1);
  });
});
