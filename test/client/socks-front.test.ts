import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CircuitClient } from '../../src/client/circuit-client.js';
import { circuitUrl } from '../../src/client/redeem.js';
import {
  GrantKeeper,
  type SocksFront,
  startSocksFront,
  walletRedeemer,
} from '../../src/client/socks-front.js';
import { openTunnel, TunnelError } from '../../src/client/tunnel-client.js';
import { Wallet } from '../../src/client/wallet.js';
import type { Relay } from '../../src/relay/relay.js';
import { utcDay } from '../../src/tickets/keyring.js';
import { startTestRelay } from '../helpers/test-relay.js';
import { issueTicketV2 } from '../helpers/ticket-v2.js';

/** The local SOCKS5 front: CONNECT streams through the relay's tunnel, with grants. */

const dir = mkdtempSync(join(tmpdir(), 'powbridge-socks-front-'));
let relay: Relay;
let echo: Server;
let echoPort: number;
let closedPort: number;
const fronts: SocksFront[] = [];
const keepers: GrantKeeper[] = [];

beforeAll(async () => {
  echo = createServer((socket) => {
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
  echoPort = (echo.address() as { port: number }).port;
  // A port nothing listens on: take one and free it.
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  closedPort = (probe.address() as { port: number }).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  ({ relay } = await startTestRelay({
    dataDir: dir,
    tunnel: { ports: [echoPort, closedPort], allowCidrs: ['127.0.0.1/32'] },
  }));
}, 30_000);

afterAll(async () => {
  for (const keeper of keepers) keeper.close();
  await Promise.all(fronts.map((front) => front.close()));
  await relay?.close();
  await new Promise<void>((resolve) => echo.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

/** Bytes each tunnel class of the relay has sent, from its status. */
async function bytesByClass(): Promise<Map<string, number>> {
  const status = (await (await fetch(`${relay.url}/v1/status`)).json()) as {
    qos: { classes: { name: string; bytesSent: number }[] };
  };
  return new Map(status.qos.classes.map((c) => [c.name, c.bytesSent]));
}

async function front(grant?: GrantKeeper | (() => string | null)): Promise<SocksFront> {
  const started = await startSocksFront({
    host: '127.0.0.1',
    port: 0,
    relayUrl: relay.url,
    ...(grant ? { grant } : {}),
  });
  fronts.push(started);
  return started;
}

/** A socket with a byte reader: read(n) resolves with exactly n bytes, or rejects on close. */
function client(port: number): Promise<{ socket: Socket; read(n: number): Promise<Buffer> }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let buffered = Buffer.alloc(0);
    let ended = false;
    let waiter: (() => void) | null = null;
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      waiter?.();
    });
    const onEnd = () => {
      ended = true;
      waiter?.();
    };
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    socket.on('error', () => {});
    const read = (n: number) =>
      new Promise<Buffer>((done, fail) => {
        const check = () => {
          if (buffered.length >= n) {
            waiter = null;
            const out = buffered.subarray(0, n);
            buffered = buffered.subarray(n);
            done(out);
          } else if (ended) {
            waiter = null;
            fail(new Error(`closed after ${buffered.length} of ${n} bytes`));
          }
        };
        waiter = check;
        check();
      });
    socket.once('connect', () => resolve({ socket, read }));
    socket.once('error', reject);
  });
}

function closed(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve();
    socket.once('close', () => resolve());
  });
}

function connectRequest(host: string, port: number, cmd: number, asName: boolean): Buffer {
  const portBytes = Buffer.from([port >> 8, port & 0xff]);
  if (!asName && /^\d+\.\d+\.\d+\.\d+$/.test(host)) {
    return Buffer.concat([Buffer.from([5, cmd, 0, 1, ...host.split('.').map(Number)]), portBytes]);
  }
  const name = Buffer.from(host, 'latin1');
  return Buffer.concat([Buffer.from([5, cmd, 0, 3, name.length]), name, portBytes]);
}

/** Greeting and request; resolves with the reply code and the connected client. */
async function socksConnect(
  frontPort: number,
  host: string,
  port: number,
  { cmd = 1, asName = false }: { cmd?: number; asName?: boolean } = {},
) {
  const c = await client(frontPort);
  c.socket.write(Buffer.from([5, 1, 0]));
  expect([...(await c.read(2))]).toEqual([5, 0]);
  c.socket.write(connectRequest(host, port, cmd, asName));
  const head = await c.read(10);
  expect(head[0]).toBe(5);
  return { ...c, code: head[1]! };
}

async function echoRoundTrip(c: { socket: Socket; read(n: number): Promise<Buffer> }) {
  const payload = randomBytes(1024 * 1024);
  c.socket.write(payload);
  const back = await c.read(payload.length);
  expect(back.equals(payload)).toBe(true);
}

describe('SOCKS5 front over the relay tunnel', () => {
  it('CONNECT by IPv4 carries 1 MB exactly', async () => {
    const f = await front();
    const c = await socksConnect(f.address.port, '127.0.0.1', echoPort);
    expect(c.code).toBe(0);
    await echoRoundTrip(c);
    c.socket.end();
    await closed(c.socket);
  }, 30_000);

  it('CONNECT by domain name carries 1 MB exactly (the relay resolves it)', async () => {
    const f = await front();
    // ATYP 3 with a name the relay's resolver answers without DNS.
    const c = await socksConnect(f.address.port, '127.0.0.1', echoPort, { asName: true });
    expect(c.code).toBe(0);
    await echoRoundTrip(c);
    c.socket.end();
    await closed(c.socket);
  }, 30_000);

  it('CONNECT to localhost goes through, or is refused by policy if it resolves to ::1', async () => {
    const f = await front();
    const c = await socksConnect(f.address.port, 'localhost', echoPort);
    // The relay allows 127.0.0.1/32 only; a resolver answering ::1 first meets the policy.
    expect([0, 2]).toContain(c.code);
    if (c.code === 0) {
      c.socket.write('through localhost');
      expect((await c.read(17)).toString()).toBe('through localhost');
    }
    c.socket.end();
    await closed(c.socket);
  });

  it('a port outside the exit policy gets 0x02; a refused connection 0x05', async () => {
    const f = await front();
    const refusedByPolicy = await socksConnect(f.address.port, '127.0.0.1', 22);
    expect(refusedByPolicy.code).toBe(2);
    await closed(refusedByPolicy.socket);
    const refused = await socksConnect(f.address.port, '127.0.0.1', closedPort);
    expect(refused.code).toBe(5);
    await closed(refused.socket);
  });

  it('CONNECT by IPv6 is parsed and forwarded (here refused by the policy: 0x02)', async () => {
    const f = await front();
    const c = await client(f.address.port);
    c.socket.write(Buffer.from([5, 1, 0]));
    expect([...(await c.read(2))]).toEqual([5, 0]);
    const v6 = Buffer.alloc(16);
    v6[15] = 1; // ::1
    c.socket.write(
      Buffer.concat([Buffer.from([5, 1, 0, 4]), v6, Buffer.from([echoPort >> 8, echoPort & 0xff])]),
    );
    expect([...(await c.read(2))]).toEqual([5, 2]);
    await closed(c.socket);
  });

  it('an unsupported command gets 0x07', async () => {
    const f = await front();
    const bind = await socksConnect(f.address.port, '127.0.0.1', echoPort, { cmd: 2 });
    expect(bind.code).toBe(7);
    await closed(bind.socket);
  });

  it('malformed greetings are closed; no acceptable method gets 0xFF', async () => {
    const f = await front();
    for (const bad of [Buffer.from([4, 1, 0]), Buffer.from([5, 0]), Buffer.from('GET / HTTP')]) {
      const c = await client(f.address.port);
      c.socket.write(bad);
      await closed(c.socket);
    }
    const c = await client(f.address.port);
    c.socket.write(Buffer.from([5, 1, 2])); // username/password only
    expect([...(await c.read(2))]).toEqual([5, 0xff]);
    await closed(c.socket);
  });

  it('an unbounded handshake is cut off', async () => {
    const f = await front();
    const c = await client(f.address.port);
    c.socket.write(Buffer.from([5, 1, 0]));
    await c.read(2);
    // A domain request announcing 255 bytes, then far more than any request.
    c.socket.write(Buffer.concat([Buffer.from([5, 1, 0, 3, 255]), Buffer.alloc(100, 0x61)]));
    c.socket.write(Buffer.alloc(100, 0x61));
    c.socket.write(Buffer.alloc(4096, 0x61));
    await closed(c.socket);
  });

  it('a GrantKeeper redeems once while a stream is active, not when idle', async () => {
    const day = utcDay(Date.now() / 1000);
    const issuing = relay.tickets.keys.issuingRsaKey(day);
    if (!issuing) throw new Error('no RSA issuing key');
    let calls = 0;
    const keeper = new GrantKeeper({
      redeem: async () => {
        calls++;
        const { text } = issueTicketV2(issuing.key, day);
        const circuit = await CircuitClient.connect(
          `${relay.url.replace('http', 'ws')}/v1/circuit`,
        );
        try {
          const grant = await circuit.request('ticket.redeem', { ticket: text });
          return { token: grant.token, expiresAt: grant.expiresAt };
        } finally {
          await circuit.close();
        }
      },
    });
    keepers.push(keeper);
    const f = await front(keeper);
    const grantsBefore = relay.tickets.redeemer.grants.size;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(calls).toBe(0); // idle: nothing redeemed

    const first = await socksConnect(f.address.port, '127.0.0.1', echoPort);
    expect(first.code).toBe(0);
    expect(calls).toBe(1);
    const token = keeper.current();
    expect(token).not.toBeNull();
    expect(relay.tickets.redeemer.grants.size).toBe(grantsBefore + 1);
    expect(relay.tickets.redeemer.grants.lookup(token!, Date.now() / 1000)).toBeDefined();
    await echoRoundTrip(first);

    // A second stream reuses the grant.
    const second = await socksConnect(f.address.port, '127.0.0.1', echoPort);
    expect(second.code).toBe(0);
    expect(calls).toBe(1);
    first.socket.end();
    second.socket.end();
    await Promise.all([closed(first.socket), closed(second.socket)]);
    // The front releases a stream's lease when its own end of the SOCKS connection closes,
    // which may follow the client's by a moment: wait for it (the bound only catches a hang).
    await vi.waitFor(() => expect(keeper.active).toBe(0), { timeout: 5_000 });
    expect(calls).toBe(1);
  }, 30_000);

  it('a GrantKeeper asked for 4 tickets tops its grant up from the wallet: the top tier', async () => {
    const day = utcDay(Date.now() / 1000);
    const issuing = relay.tickets.keys.issuingRsaKey(day);
    if (!issuing) throw new Error('no RSA issuing key');
    const wallet = Wallet.open(join(dir, 'tier-wallet.sqlite'));
    try {
      const relayUrl = circuitUrl(relay.url);
      const keyId = Buffer.from(issuing.key.keyId).toString('hex');
      for (let i = 0; i < 5; i++) {
        wallet.add(
          relayUrl,
          { ticket: issueTicketV2(issuing.key, day).text, keyId, day },
          Date.now() / 1000,
        );
      }
      const keeper = new GrantKeeper({
        redeem: walletRedeemer(wallet, { relayUrl, now: () => Date.now() / 1000 }),
        tickets: 4,
      });
      keepers.push(keeper);
      const f = await front(keeper);
      const before = await bytesByClass();
      const c = await socksConnect(f.address.port, '127.0.0.1', echoPort);
      expect(c.code).toBe(0);
      // The stream opened on the fresh grant; the top-ups follow while it runs.
      await vi.waitFor(() => expect(keeper.paidTickets).toBe(4), { timeout: 10_000 });
      await keeper.settled();
      const token = keeper.current();
      if (token === null) throw new Error('no grant');
      expect(relay.tickets.redeemer.grants.lookup(token, Date.now() / 1000)?.tickets).toBe(4);
      expect([keeper.redeems, keeper.topUps]).toEqual([4, 3]);
      expect(wallet.counts()).toMatchObject({ unspent: 1, spent: 4 });
      // The open stream moved up with its grant: its bytes now go through group1.
      await echoRoundTrip(c);
      const after = await bytesByClass();
      // 1 MiB each way, all of it shaped as group1.
      expect((after.get('group1') ?? 0) - (before.get('group1') ?? 0)).toBe(2 * 1024 * 1024);
      c.socket.end();
      await closed(c.socket);
    } finally {
      wallet.close();
    }
  }, 30_000);

  it('a GrantKeeper keeps its tier: a top-up before each ticket lapses, a pause when the wallet is empty', async () => {
    let clock = 1_000;
    let inWallet = 2;
    const calls: (string | undefined)[] = [];
    const keeper = new GrantKeeper({
      tickets: 3,
      now: () => clock,
      redeem: (topUp) => {
        calls.push(topUp);
        if (inWallet === 0) return Promise.resolve(null);
        inWallet--;
        return Promise.resolve({ token: topUp ?? `grant${calls.length}`, expiresAt: clock + 600 });
      },
    });
    keepers.push(keeper);
    const settle = async (redeems: number) => {
      await vi.waitFor(() => expect(calls).toHaveLength(redeems));
      await keeper.settled();
    };
    const first = keeper.lease();
    // A fresh grant, one top-up, then the wallet is empty: the keeper backs off.
    await settle(3);
    expect(calls).toEqual([undefined, 'grant1', 'grant1']);
    expect([keeper.current(), keeper.paidTickets]).toEqual(['grant1', 2]);
    keeper.lease()();
    expect(calls).toHaveLength(3);
    // Tickets earned meanwhile; after the backoff the next stream's start tops up to 3.
    inWallet = 10;
    clock += 61;
    keeper.lease()();
    await settle(4);
    expect([keeper.current(), keeper.paidTickets]).toEqual(['grant1', 3]);
    keeper.lease()();
    expect(calls).toHaveLength(4); // the tier holds: nothing to do
    // 59 s before the first two tickets lapse they no longer count: two top-ups, same token.
    clock = 1_000 + 600 - 59;
    keeper.lease()();
    await settle(6);
    expect(calls.slice(4)).toEqual(['grant1', 'grant1']);
    expect([keeper.current(), keeper.paidTickets, keeper.topUps]).toEqual(['grant1', 3, 5]);
    first();
  });

  it('a token the relay refuses falls back to the free class', async () => {
    const keeper = new GrantKeeper({ redeem: () => Promise.resolve(null), autoRedeem: false });
    keepers.push(keeper);
    keeper.set({ token: 'A'.repeat(43), expiresAt: Date.now() / 1000 + 3600 });
    const f = await front(keeper);
    const c = await socksConnect(f.address.port, '127.0.0.1', echoPort);
    expect(c.code).toBe(0);
    expect(keeper.current()).toBeNull(); // forgotten after the 401
    c.socket.write('hello');
    expect((await c.read(5)).toString()).toBe('hello');
    c.socket.end();
    await closed(c.socket);
  });

  it('openTunnel reports 401 and close codes as TunnelErrors', async () => {
    await expect(
      openTunnel(relay.url, `127.0.0.1:${echoPort}`, { token: 'B'.repeat(43) }),
    ).rejects.toMatchObject({ failure: 'unauthorized', code: 401 });
    const err = await openTunnel(relay.url, '127.0.0.1:22').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TunnelError);
    expect(err).toMatchObject({ failure: 'not-allowed', code: 1008 });
  });
});
