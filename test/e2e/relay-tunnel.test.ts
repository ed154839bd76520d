import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { CircuitClient } from '../../src/client/circuit-client.js';
import { utcDay } from '../../src/tickets/keyring.js';
import type { Relay } from '../../src/relay/relay.js';
import { issueTicketV2 } from '../helpers/ticket-v2.js';
import { startTestRelay } from '../helpers/test-relay.js';
import { echoRoundTrip } from '../helpers/tunnel-stream.js';

/** The relay's priority tunnel as a client uses it: redeem a ticket, then stream with the grant. */

const dir = mkdtempSync(join(tmpdir(), 'powbridge-tunnel-e2e-'));
let relay: Relay;
let echo: Server;
let echoPort: number;

beforeAll(async () => {
  echo = createServer((socket) => socket.pipe(socket));
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
  echoPort = (echo.address() as { port: number }).port;
  ({ relay } = await startTestRelay({
    dataDir: dir,
    tunnel: { ports: [echoPort], allowCidrs: ['127.0.0.1/32'] },
  }));
}, 30_000);

afterAll(async () => {
  await relay?.close();
  await new Promise<void>((resolve) => echo.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

function tunnel(to: string, token?: string): WebSocket {
  return new WebSocket(`${relay.url.replace('http', 'ws')}/v1/tunnel?to=${to}`, {
    ...(token ? { headers: { authorization: `Priority ${token}` } } : {}),
  });
}

describe('priority tunnel through the relay', () => {
  it('a redeemed ticket grants a paid stream that carries bytes exactly', async () => {
    const day = utcDay(Date.now() / 1000);
    const issuing = relay.tickets.keys.issuingRsaKey(day);
    if (!issuing) throw new Error('no issuing key');
    const { text } = issueTicketV2(issuing.key, day);
    const circuit = await CircuitClient.connect(`${relay.url.replace('http', 'ws')}/v1/circuit`);
    const grant = await circuit.request('ticket.redeem', { ticket: text });
    await circuit.close();

    const payload = Buffer.alloc(256 * 1024, 7);
    const ws = tunnel(`127.0.0.1:${echoPort}`, grant.token);
    expect((await echoRoundTrip(ws, payload)).equals(payload)).toBe(true);
    ws.close();
  });

  it('without a grant the stream still works (free class)', async () => {
    const ws = tunnel(`127.0.0.1:${echoPort}`);
    expect((await echoRoundTrip(ws, Buffer.from('hello'))).toString()).toBe('hello');
    ws.close();
  });

  it('an invalid grant is refused with 401; a port outside the policy with 1008', async () => {
    const status = await new Promise<number>((resolve) => {
      const ws = tunnel(`127.0.0.1:${echoPort}`, 'A'.repeat(43));
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.once('error', () => undefined);
    });
    expect(status).toBe(401);
    const code = await new Promise<number>((resolve) => {
      const ws = tunnel('127.0.0.1:22');
      ws.once('close', (c) => resolve(c));
      ws.once('error', () => undefined);
    });
    expect(code).toBe(1008);
  });
});

/** Bytes each tunnel class has sent, from the relay's status. */
async function bytesByClass(): Promise<Map<string, number>> {
  const status = (await (await fetch(`${relay.url}/v1/status`)).json()) as {
    qos: { classes: { name: string; bytesSent: number }[] };
  };
  return new Map(status.qos.classes.map((c) => [c.name, c.bytesSent]));
}

/** Send `payload` through a stream with `token` and back; returns what each class carried. */
async function carriedBy(token: string, payload: Buffer): Promise<Map<string, number>> {
  const before = await bytesByClass();
  const ws = tunnel(`127.0.0.1:${echoPort}`, token);
  expect((await echoRoundTrip(ws, payload)).equals(payload)).toBe(true);
  ws.close();
  const after = await bytesByClass();
  return new Map([...after].map(([name, bytes]) => [name, bytes - (before.get(name) ?? 0)]));
}

describe('several tickets per window', () => {
  it('top up one grant and move its streams to a higher group', async () => {
    const day = utcDay(Date.now() / 1000);
    const issuing = relay.tickets.keys.issuingRsaKey(day);
    if (!issuing) throw new Error('no issuing key');
    const circuit = await CircuitClient.connect(`${relay.url.replace('http', 'ws')}/v1/circuit`);
    try {
      const first = await circuit.request('ticket.redeem', {
        ticket: issueTicketV2(issuing.key, day).text,
      });
      // One ticket: the lower tier, group4 (docs/design.md §8). Both directions are shaped.
      const payload = Buffer.alloc(64 * 1024, 9);
      const one = await carriedBy(first.token, payload);
      expect(one.get('group4')).toBe(2 * payload.length);
      expect(one.get('group1')).toBe(0);
      let grant = first;
      for (let i = 0; i < 3; i++) {
        grant = await circuit.request('ticket.redeem', {
          ticket: issueTicketV2(issuing.key, day).text,
          grant: grant.token,
        });
        expect(grant.token).toBe(first.token);
      }
      const entry = relay.tickets.redeemer.grants.lookup(first.token, Date.now() / 1000);
      expect(entry?.tickets).toBe(4);
      expect(grant.expiresAt).toBeGreaterThanOrEqual(first.expiresAt);
      // Four tickets in the window: the top tier, group1.
      const four = await carriedBy(first.token, payload);
      expect(four.get('group1')).toBe(2 * payload.length);
      expect(four.get('group4')).toBe(0);
      // An unknown token is not topped up: the ticket buys a grant of its own.
      const fresh = await circuit.request('ticket.redeem', {
        ticket: issueTicketV2(issuing.key, day).text,
        grant: 'x'.repeat(43),
      });
      expect(fresh.token).not.toBe(first.token);
      expect(relay.tickets.redeemer.grants.lookup(fresh.token, Date.now() / 1000)?.tickets).toBe(1);
      await expect(
        circuit.request('ticket.redeem', {
          ticket: issueTicketV2(issuing.key, day).text,
          grant: 'no!',
        }),
      ).rejects.toMatchObject({ code: -32602, message: /grant/ });
    } finally {
      await circuit.close();
    }
  });
});

describe('tunnel class tree and ticket groups from the config', () => {
  it('a bad tree or mapping stops the relay with an error naming the class or group', async () => {
    const { parseRelayConfig } = await import('../../src/relay/config.js');
    const { startRelay } = await import('../../src/relay/relay.js');
    const withClasses = (classes: object[], groups?: object[]) =>
      parseRelayConfig({
        relay: { listen: '127.0.0.1:0', dataDir: join(dir, 'bad-tree') },
        source: {
          type: 'node',
          node: {
            rpcUrl: 'http://127.0.0.1:1',
            rpcUser: 'u',
            rpcPassword: 'p',
            payoutAddress: 'a',
          },
        },
        tunnel: { classes, ...(groups ? { groups } : {}) },
      });
    const root = { name: 'root', rate: '10mbit' };
    // A tree the HTB refuses is refused with the config, before anything starts.
    expect(() =>
      withClasses([root, { name: 'free', parent: 'root', rate: '4mbit', ceil: '2mbit', prio: 7 }]),
    ).toThrow(/tunnel\.classes\[1\]\.ceil \(name "free"\)/);
    // A tree without the leaves of the ticket groups is refused with the config too.
    expect(() =>
      withClasses([root, { name: 'free', parent: 'root', rate: '4mbit', prio: 7 }]),
    ).toThrow(/tunnel\.classes: the default \[\[tunnel\.groups\]\] .*no class "group4"/);
    // So is a mapping where more tickets buy less (the old, inverted one).
    const paid = [
      root,
      { name: 'free', parent: 'root', rate: '2mbit', prio: 7 },
      { name: 'paid', parent: 'root', rate: '8mbit' },
      { name: 'gold', parent: 'paid', rate: '4mbit', prio: 0 },
      { name: 'tin', parent: 'paid', rate: '1mbit', prio: 3 },
    ];
    const inverted = [
      { minTickets: 1, leaf: 'gold' },
      { minTickets: 4, leaf: 'tin' },
    ];
    expect(() => withClasses(paid, inverted)).toThrow(
      /tunnel\.groups\[1\]\.leaf: "tin" \(4\+ tickets\) is guaranteed 125000 B\/s, less than "gold"/,
    );
    // A valid tree and mapping without the free leaf stops the relay.
    const config = withClasses(
      paid.filter((c) => c.name !== 'free'),
      [
        { minTickets: 1, leaf: 'tin' },
        { minTickets: 4, leaf: 'gold' },
      ],
    );
    await expect(startRelay(config)).rejects.toThrow(/"free" is not a leaf class/);
  });
});
