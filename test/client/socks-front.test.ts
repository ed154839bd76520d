import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CircuitClient } from '../../src/client/circuit-client.js';
import { GrantKeeper, type SocksFront, startSocksFront } from '../../src/client/socks-front.js';
import { openTunnel, TunnelError } from '../../src/client/tunnel-client.js';
import type { Relay } from '../../src/relay/relay.js';
import { utcDay } from '../../src/tickets/keyring.js';
import { startTestRelay } from '../helpers/test-relay.js';
import { issueTicket } from '../helpers/ticket-issue.js';

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
    const issuing = relay.tickets.keys.issuingKey(day);
    if (!issuing) throw new Error('no issuing key');
    let calls = 0;
    const keeper = new GrantKeeper({
      redeem: async () => {
        calls++;
        const { text } = issueTicket(issuing.key, day);
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
