import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  HEADER_NONCE,
  HEADER_PEER,
  HEADER_SIGNATURE,
  HEADER_TIMESTAMP,
  type PeerSigner,
  ReplayGuard,
  requestSigningBytes,
  responseSigningBytes,
  sign,
  verifySigned,
} from '../../src/peers/peer-auth.js';
import { PeerClient } from '../../src/peers/peer-client.js';
import { spentResponse } from '../../src/peers/peer-messages.js';
import { makeIdentity } from '../../src/tickets/key-format.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type PeeredRelays, startPeeredRelays } from './peered-relays.js';

/**
 * The peer API refuses whatever a pinned peer did not sign, with a clear, signed error:
 * unknown peers, bad signatures, stale timestamps and replays (docs/design.md §7).
 */

let pair: PeeredRelays;
let r2: PeerSigner; // R2's real identity, read from its key file
let r1Url: string;
let r1Identity: string;

beforeAll(async () => {
  pair = await startPeeredRelays();
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
  const signature = sign(
    signer,
    requestSigningBytes({
      method,
      path: options.signedPath ?? path,
      to: r1Identity,
      from: claimed,
      timestamp,
      nonce,
      body,
    }),
  );
  const res = await fetch(`${r1Url}${path}`, {
    method,
    headers: {
      [HEADER_PEER]: claimed,
      [HEADER_TIMESTAMP]: String(timestamp),
      [HEADER_NONCE]: nonce,
      [HEADER_SIGNATURE]: signature,
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
  return { status: res.status, body: JSON.parse(text) as Sent['body'], verified };
}

describe('peer API authentication', () => {
  it('answers a correctly signed request from a pinned peer, signed', async () => {
    const answer = await send({});
    expect(answer.status).toBe(200);
    expect(answer.verified).toBe(true);
    expect(spentResponse.parse(answer.body)).toEqual({ records: [], more: false, head: 0 });
  });

  it('refuses an unknown peer', async () => {
    const stranger = makeIdentity(randomBytes(32));
    const answer = await send({ signer: stranger });
    expect(answer).toMatchObject({ status: 401, body: { error: { code: 'unknown_peer' } } });
    expect(answer.verified).toBe(true);
  });

  it('refuses a signature by another key under a pinned identity', async () => {
    const forger = makeIdentity(randomBytes(32));
    const answer = await send({ signer: forger, claimed: r2.publicKeyHex });
    expect(answer).toMatchObject({ status: 401, body: { error: { code: 'bad_signature' } } });
  });

  it('refuses a request whose signed path differs from the one sent', async () => {
    const answer = await send({ signedPath: '/v1/peer/spent?after=5&limit=10' });
    expect(answer.body.error?.code).toBe('bad_signature');
  });

  it('refuses stale and future timestamps', async () => {
    const now = Math.floor(Date.now() / 1000);
    for (const timestamp of [now - 3600, now + 3600]) {
      const answer = await send({ timestamp });
      expect(answer).toMatchObject({ status: 401, body: { error: { code: 'stale_timestamp' } } });
    }
  });

  it('refuses a replayed request', async () => {
    const nonce = randomBytes(16).toString('hex');
    const timestamp = Math.floor(Date.now() / 1000);
    expect((await send({ nonce, timestamp })).status).toBe(200);
    const replay = await send({ nonce, timestamp });
    expect(replay).toMatchObject({ status: 401, body: { error: { code: 'replay' } } });
  });

  it('refuses missing headers and a bad body with clear errors', async () => {
    const res = await fetch(`${r1Url}/v1/peer/spent?after=0`);
    expect(res.status).toBe(401);
    expect(((await res.json()) as Sent['body']).error?.code).toBe('missing_headers');
    const bad = await send({ path: '/v1/peer/reserve', body: '{"serials":[]}' });
    expect(bad.status).toBe(400);
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

  it('PeerClient refuses an answer not signed by the pinned identity', async () => {
    const client = new PeerClient({
      self: r2,
      // R1's address, but pinned to some other identity.
      peer: { name: 'r1', url: r1Url, identity: makeIdentity(randomBytes(32)).publicKeyHex },
      timeoutMs: 2000,
      clockSkewSeconds: 60,
      now: () => Date.now() / 1000,
    });
    await expect(
      client.call('GET', '/v1/peer/spent?after=0', undefined, spentResponse),
    ).rejects.toThrow(/not signed by its pinned identity/);
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
