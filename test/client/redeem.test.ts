import { randomBytes } from 'node:crypto';
import { Agent } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { circuitUrl, redeemFromWallet } from '../../src/client/redeem.js';
import type { IssuedTicket } from '../../src/client/ticket-client.js';
import { Wallet } from '../../src/client/wallet.js';
import { encodeError } from '../../src/protocol/jsonrpc.js';
import type { Relay } from '../../src/relay/relay.js';
import { KeyStore } from '../../src/tickets/key-store.js';
import { utcDay } from '../../src/tickets/keyring.js';
import { generateSignerKey, type SignerKey } from '../../src/tickets/scheme.js';
import { startTestRelay } from '../helpers/test-relay.js';
import { csprng, issueTicket } from '../helpers/ticket-issue.js';
import { issueTicketV2, vectorRsaKeys } from '../helpers/ticket-v2.js';

const dataDir = mkdtempSync(join(tmpdir(), 'powbridge-redeem-relay-'));
let relay: Relay;
let relayUrl: string;
let dir: string;
let wallet: Wallet;

const now = () => Date.now() / 1000;
const today = () => utcDay(now());

beforeAll(async () => {
  // Abe–Okamoto: these tests are about v1 tickets (v2 at a relay issuing RSA is further down).
  ({ relay } = await startTestRelay({ dataDir, scheme: 'ao' }));
  relayUrl = circuitUrl(relay.url);
}, 30_000);

afterAll(async () => {
  await relay?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'powbridge-redeem-'));
  wallet = Wallet.open(join(dir, 'wallet.sqlite'));
});

afterEach(() => {
  wallet.close();
  rmSync(dir, { recursive: true, force: true });
});

function relayKey(): SignerKey {
  const issuing = relay.tickets.keys.issuingKey(today());
  if (!issuing) throw new Error('relay has no issuing key today');
  return issuing.key;
}

function issued(key: SignerKey, day = today()): IssuedTicket {
  return {
    ticket: issueTicket(key, day).text,
    keyId: Buffer.from(key.keyId).toString('hex'),
    day,
  };
}

describe('redeemFromWallet against a relay', () => {
  it('redeems the next ticket over a fresh circuit and marks it spent with the grant expiry', async () => {
    const stored = wallet.add(relayUrl, issued(relayKey()), now());
    let agents = 0;
    const outcome = await redeemFromWallet(wallet, {
      relayUrl,
      now,
      agentFactory: () => {
        agents++;
        return new Agent();
      },
    });
    expect(outcome).toMatchObject({
      kind: 'granted',
      ticketId: stored.id,
      grant: { class: 'paid' },
    });
    if (outcome.kind !== 'granted') throw new Error('not granted');
    expect(outcome.grant.expiresAt).toBeGreaterThan(now());
    expect(agents).toBe(1);
    expect(wallet.list()).toMatchObject([
      { id: stored.id, state: 'spent', grantExpiresAt: outcome.grant.expiresAt },
    ]);
    expect(wallet.list()[0]?.spentAt).toBeGreaterThan(0);
    expect(await redeemFromWallet(wallet, { relayUrl, now })).toEqual({ kind: 'none' });
  });

  it('marks a ticket the relay already spent as spent (32): it is worth nothing', async () => {
    const ticket = issued(relayKey());
    const first = wallet.add(relayUrl, ticket, now());
    expect((await redeemFromWallet(wallet, { relayUrl, now })).kind).toBe('granted');
    // The same ticket in a second wallet (a restored backup, a copy on another machine).
    const copy = Wallet.open(join(dir, 'copy.sqlite'));
    try {
      const again = copy.add(relayUrl, ticket, now());
      const outcome = await redeemFromWallet(copy, { relayUrl, now });
      expect(outcome).toMatchObject({ kind: 'already-spent', ticketId: again.id });
      expect(copy.list()).toMatchObject([{ state: 'spent', grantExpiresAt: null }]);
    } finally {
      copy.close();
    }
    expect(wallet.list()).toMatchObject([{ id: first.id, state: 'spent' }]);
  });

  it('keeps a ticket of an unknown key (35) unspent, and skipping it reaches the next', async () => {
    const foreign = wallet.add(relayUrl, issued(generateSignerKey(csprng), today() - 1), now());
    const good = wallet.add(relayUrl, issued(relayKey()), now());
    const refused = await redeemFromWallet(wallet, { relayUrl, now });
    expect(refused).toMatchObject({ kind: 'refused', ticketId: foreign.id, code: 35 });
    expect(wallet.counts()).toEqual({ unspent: 2, spent: 0, expired: 0 });
    const next = await redeemFromWallet(wallet, { relayUrl, now, skip: [foreign.id] });
    expect(next).toMatchObject({ kind: 'granted', ticketId: good.id });
    expect(wallet.list({ state: 'unspent' }).map((t) => t.id)).toEqual([foreign.id]);
  });

  it('marks a ticket the relay calls expired (31) as expired, whatever our clock says', async () => {
    // Our clock runs a day ahead: tomorrow's ticket looks redeemable here, from the future there.
    const tomorrow = today() + 1;
    const stored = wallet.add(relayUrl, issued(relayKey(), tomorrow), now());
    const outcome = await redeemFromWallet(wallet, { relayUrl, now: () => now() + 86_400 });
    expect(outcome).toMatchObject({ kind: 'expired', ticketId: stored.id });
    expect(wallet.list()).toMatchObject([{ id: stored.id, state: 'expired' }]);
  });

  it('keeps the ticket unspent when the relay cannot be reached', async () => {
    const closed = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await new Promise((resolve) => closed.once('listening', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise((resolve) => closed.close(resolve));
    const deadUrl = `ws://127.0.0.1:${port}/v1/circuit`;
    const stored = wallet.add(deadUrl, issued(relayKey()), now());
    const outcome = await redeemFromWallet(wallet, { relayUrl: deadUrl, now });
    expect(outcome).toMatchObject({ kind: 'unreachable', ticketId: stored.id });
    expect(wallet.list()).toMatchObject([{ state: 'unspent' }]);
  });
});

describe('redeemFromWallet at a backup relay (Protocol 2)', () => {
  const root = mkdtempSync(join(tmpdir(), 'powbridge-redeem-peers-'));
  let r1: Relay;
  let r2: Relay;

  const freePort = () =>
    new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const { port } = server.address() as AddressInfo;
        server.close(() => resolve(port));
      });
    });

  beforeAll(async () => {
    // Each relay's config names the other's URL and identity, so both are known before either
    // starts: identities from key stores created here (the relays load them), ports picked free.
    const side = async (name: string) => {
      const dir = join(root, name);
      const keys = await KeyStore.open(dir, { now });
      return { name, dir, port: await freePort(), identity: keys.identity.publicKeyHex };
    };
    const a = await side('r1');
    const b = await side('r2');
    const start = async (self: typeof a, peer: typeof a) =>
      (
        await startTestRelay({
          dataDir: self.dir,
          listen: `127.0.0.1:${self.port}`,
          peers: [
            { name: peer.name, url: `http://127.0.0.1:${peer.port}`, identity: peer.identity },
          ],
          // The test syncs by hand; the timer only backs that up.
          peering: { syncIntervalSeconds: 3600, requestTimeoutSeconds: 2 },
          scheme: 'ao',
        })
      ).relay;
    r1 = await start(a, b);
    r2 = await start(b, a);
  }, 30_000);

  afterAll(async () => {
    await r2?.close();
    await r1?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it("spends R1's ticket at R2 when told to (`at`); the wallet marks it spent", async () => {
    // R2 learns R1's ticket keys from R1's signed descriptor.
    await r2.peering?.syncPeer('r1');
    const r1Url = circuitUrl(r1.url);
    const issuing = r1.tickets.keys.issuingKey(today());
    if (!issuing) throw new Error('r1 has no issuing key today');
    const ticket = issued(issuing.key);
    const stored = wallet.add(r1Url, ticket, now());

    const outcome = await redeemFromWallet(wallet, {
      relayUrl: r1Url,
      at: circuitUrl(r2.url),
      now,
    });
    expect(outcome).toMatchObject({
      kind: 'granted',
      ticketId: stored.id,
      grant: { class: 'paid' },
    });
    expect(wallet.list()).toMatchObject([{ id: stored.id, relay: r1Url, state: 'spent' }]);
    // R2 reserved the serial at R1 (online) before granting, and bills R1 for it later.
    expect(await r2.peering?.ledger.balance('r1')).toMatchObject({ served: 1, owedSync: 0 });

    // So the same ticket is spent at R1 too.
    const copy = Wallet.open(join(dir, 'copy.sqlite'));
    try {
      copy.add(r1Url, ticket, now());
      expect(await redeemFromWallet(copy, { relayUrl: r1Url, now })).toMatchObject({
        kind: 'already-spent',
      });
    } finally {
      copy.close();
    }
  });
});

describe('redeemFromWallet: v2 tickets at a relay issuing partially blind RSA', () => {
  const rsaDir = mkdtempSync(join(tmpdir(), 'powbridge-redeem-rsa-'));
  let rsaRelay: Relay;

  beforeAll(async () => {
    ({ relay: rsaRelay } = await startTestRelay({ dataDir: rsaDir, scheme: 'rsa' }));
  }, 30_000);

  afterAll(async () => {
    await rsaRelay?.close();
    rmSync(rsaDir, { recursive: true, force: true });
  });

  function v2Issued(day = today()): IssuedTicket {
    const issuing = rsaRelay.tickets.keys.issuingRsaKey(day);
    if (!issuing) throw new Error('relay has no RSA issuing key today');
    return {
      ticket: issueTicketV2(issuing.key, day).text,
      keyId: Buffer.from(issuing.key.keyId).toString('hex'),
      day,
    };
  }

  it('redeems a v2 ticket for a grant, and a copy of it is already spent', async () => {
    const url = circuitUrl(rsaRelay.url);
    const ticket = v2Issued();
    const stored = wallet.add(url, ticket, now());
    expect(await redeemFromWallet(wallet, { relayUrl: url, now })).toMatchObject({
      kind: 'granted',
      ticketId: stored.id,
      grant: { class: 'paid' },
    });
    expect(wallet.list()).toMatchObject([{ id: stored.id, state: 'spent' }]);
    const copy = Wallet.open(join(dir, 'copy.sqlite'));
    try {
      copy.add(url, ticket, now());
      expect(await redeemFromWallet(copy, { relayUrl: url, now })).toMatchObject({
        kind: 'already-spent',
      });
      expect(copy.list()).toMatchObject([{ state: 'spent' }]);
    } finally {
      copy.close();
    }
  });

  it('keeps a v2 ticket of a key the relay does not know (35) unspent', async () => {
    const url = circuitUrl(rsaRelay.url);
    const { draft } = vectorRsaKeys();
    const day = today();
    const stored = wallet.add(
      url,
      {
        ticket: issueTicketV2(draft, day).text,
        keyId: Buffer.from(draft.keyId).toString('hex'),
        day,
      },
      now(),
    );
    expect(await redeemFromWallet(wallet, { relayUrl: url, now })).toMatchObject({
      kind: 'refused',
      ticketId: stored.id,
      code: 35,
    });
    expect(wallet.counts()).toEqual({ unspent: 1, spent: 0, expired: 0 });
  });
});

describe('redeemFromWallet against a scripted relay', () => {
  let server: WebSocketServer;
  let url: string;
  /** What the scripted relay does with each request. */
  let behave: (id: number, send: (text: string) => void, hangUp: () => void) => void;

  beforeEach(async () => {
    server = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await new Promise((resolve) => server.once('listening', resolve));
    url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/v1/circuit`;
    server.on('connection', (ws) =>
      ws.on('message', (data: Buffer) => {
        const { id } = JSON.parse(data.toString()) as { id: number };
        behave(
          id,
          (text) => ws.send(text),
          () => ws.terminate(),
        );
      }),
    );
  });

  afterEach(async () => {
    for (const ws of server.clients) ws.terminate();
    await new Promise((resolve) => server.close(resolve));
  });

  it('keeps the ticket unspent when the issuer is busy (33) and passes retryAfter on', async () => {
    behave = (id, send) =>
      send(encodeError(id, { code: 33, message: 'issuer busy', data: { retryAfter: 7 } }));
    const stored = wallet.add(url, issued(relayKey()), now());
    expect(await redeemFromWallet(wallet, { relayUrl: url, now })).toEqual({
      kind: 'busy',
      ticketId: stored.id,
      message: 'issuer busy',
      retryAfter: 7,
    });
    expect(wallet.counts().unspent).toBe(1);
  });

  it('reads an overloaded relay (38) as busy too: the ticket is kept', async () => {
    behave = (id, send) =>
      send(encodeError(id, { code: 38, message: 'relay overloaded', data: { retryAfter: 3 } }));
    const stored = wallet.add(url, issued(relayKey()), now());
    expect(await redeemFromWallet(wallet, { relayUrl: url, now })).toEqual({
      kind: 'busy',
      ticketId: stored.id,
      message: 'relay overloaded',
      retryAfter: 3,
    });
    expect(wallet.counts().unspent).toBe(1);
  });

  it('reads 36 at a backup as refusing every ticket of that relay: kept unspent', async () => {
    behave = (id, send) =>
      send(
        encodeError(id, {
          code: 36,
          message:
            'peer not trusted: tickets of r1 are not accepted here until it settles its debt',
        }),
      );
    const stored = wallet.add(relayUrl, issued(relayKey()), now());
    wallet.add(relayUrl, issued(relayKey()), now());
    expect(await redeemFromWallet(wallet, { relayUrl, at: url, now })).toEqual({
      kind: 'not-accepted',
      ticketId: stored.id,
      message: 'peer not trusted: tickets of r1 are not accepted here until it settles its debt',
    });
    expect(wallet.counts()).toEqual({ unspent: 2, spent: 0, expired: 0 });
  });

  it('keeps the ticket unspent when the answer is lost (the relay may have spent it)', async () => {
    behave = (_id, _send, hangUp) => hangUp();
    const stored = wallet.add(url, issued(relayKey()), now());
    const outcome = await redeemFromWallet(wallet, { relayUrl: url, now });
    expect(outcome).toMatchObject({ kind: 'unreachable', ticketId: stored.id });
    expect(wallet.counts().unspent).toBe(1);
  });

  it('spends v2 tickets like v1: the one expiring first, sent as stored, settled by the verdict', async () => {
    const sent: string[] = [];
    behave = (id, send) => send(encodeError(id, { code: 32, message: 'ticket already spent' }));
    server.on('connection', (ws) =>
      ws.on('message', (data: Buffer) => {
        const { params } = JSON.parse(data.toString()) as { params: { ticket: string } };
        sent.push(params.ticket);
      }),
    );
    const { ours } = vectorRsaKeys();
    const v2 = (day: number): IssuedTicket => ({
      ticket: issueTicketV2(ours, day).text,
      keyId: Buffer.from(ours.keyId).toString('hex'),
      day,
    });
    const v1Today = wallet.add(url, issued(relayKey()), now());
    const v2Yesterday = wallet.add(url, v2(today() - 1), now());
    const v2Today = wallet.add(url, v2(today()), now());
    const first = await redeemFromWallet(wallet, { relayUrl: url, now });
    expect(first).toMatchObject({ kind: 'already-spent', ticketId: v2Yesterday.id });
    behave = (id, send) =>
      send(
        JSON.stringify({
          jsonrpc: '2.0',
          id,
          result: { token: randomBytes(32).toString('base64url'), class: 'paid', expiresAt: 1 },
        }),
      );
    const second = await redeemFromWallet(wallet, { relayUrl: url, now, skip: [v1Today.id] });
    expect(second).toMatchObject({ kind: 'granted', ticketId: v2Today.id });
    expect(sent).toEqual([v2Yesterday.ticket, v2Today.ticket]);
    expect(sent[0]).toHaveLength(402);
    expect(wallet.list({ state: 'spent' }).map((t) => t.id)).toEqual([v2Yesterday.id, v2Today.id]);
  });

  it('uses a new connection and a new agent for every redemption', async () => {
    behave = (id, send) =>
      send(
        JSON.stringify({
          jsonrpc: '2.0',
          id,
          result: {
            token: randomBytes(32).toString('base64url'),
            class: 'paid',
            expiresAt: Math.floor(now()) + 600,
          },
        }),
      );
    let connections = 0;
    server.on('connection', () => connections++);
    const agents = new Set<Agent>();
    for (let i = 0; i < 3; i++) wallet.add(url, issued(relayKey()), now());
    for (let i = 0; i < 3; i++) {
      const outcome = await redeemFromWallet(wallet, {
        relayUrl: url,
        now,
        agentFactory: () => {
          const agent = new Agent();
          agents.add(agent);
          return agent;
        },
      });
      expect(outcome.kind).toBe('granted');
    }
    expect(connections).toBe(3);
    expect(agents.size).toBe(3);
    expect(wallet.counts()).toEqual({ unspent: 0, spent: 3, expired: 0 });
  });
});

describe('circuitUrl', () => {
  it('files a relay under one canonical circuit URL', () => {
    expect(circuitUrl('http://127.0.0.1:8080')).toBe('ws://127.0.0.1:8080/v1/circuit');
    expect(circuitUrl('https://Relay.Example/')).toBe('wss://relay.example/v1/circuit');
    expect(circuitUrl('ws://relay.example:80/v1/circuit/')).toBe('ws://relay.example/v1/circuit');
    expect(circuitUrl('wss://x.onion/prefix/v1/circuit')).toBe('wss://x.onion/prefix/v1/circuit');
  });

  it('refuses what is not a relay URL', () => {
    expect(() => circuitUrl('relay.example')).toThrow(/not a URL/);
    expect(() => circuitUrl('ftp://relay.example')).toThrow(/ws:\/\//);
    expect(() => circuitUrl('ws://u:p@relay.example')).toThrow(/credentials/);
    expect(() => circuitUrl('ws://relay.example/?a=1')).toThrow(/query/);
  });
});
