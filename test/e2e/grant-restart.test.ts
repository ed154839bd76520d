import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { CircuitClient } from '../../src/client/circuit-client.js';
import { grantId } from '../../src/tickets/grant-book.js';
import { offlineRelayConfig, RelayProcesses } from '../helpers/relay-process.js';
import { fixtureRelayKeys } from '../helpers/rsa-keys.js';
import { issueTicketV2 } from '../helpers/ticket-v2.js';
import { echoRoundTrip } from '../helpers/tunnel-stream.js';

/**
 * Paid grants across a crash (docs/design.md §6.3): a real relay (`powbridge relay`, built
 * dist/) redeems tickets, one grant topped up to four tickets and one of a single ticket, and
 * is SIGKILLed right after the last answer; restarted on the same data dir, both tokens still
 * open paid tunnel streams, each in the group its tickets buy, and an unknown token is still
 * refused. The test process makes the relay's keys and signs the tickets with its RSA key (no
 * mining); the relay's work source points at a closed port, which redeeming and the tunnel do
 * not need.
 */

const dir = mkdtempSync(join(tmpdir(), 'powbridge-grant-restart-'));
const dataDir = join(dir, 'data');
const configFile = join(dir, 'relay.toml');
const relays = new RelayProcesses();
let echo: Server;
let echoPort = 0;
const tickets: string[] = [];

function tunnel(relayUrl: string, token: string): WebSocket {
  return new WebSocket(`${relayUrl.replace(/^http/, 'ws')}/v1/tunnel?to=127.0.0.1:${echoPort}`, {
    headers: { authorization: `Priority ${token}` },
  });
}

/** The HTTP status of a refused upgrade, or 101 if the stream opened. */
function upgradeStatus(ws: WebSocket): Promise<number> {
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(101));
    ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.once('error', reject);
  });
}

async function bytesByClass(relayUrl: string): Promise<Map<string, number>> {
  const status = (await (await fetch(`${relayUrl}/v1/status`)).json()) as {
    qos: { classes: { name: string; bytesSent: number }[] };
  };
  return new Map(status.qos.classes.map((c) => [c.name, c.bytesSent]));
}

/** Stream `payload` to the echo server and back with `token`; the bytes each class carried. */
async function carriedBy(relayUrl: string, token: string): Promise<Map<string, number>> {
  const payload = Buffer.alloc(32 * 1024, 5);
  const before = await bytesByClass(relayUrl);
  const ws = tunnel(relayUrl, token);
  expect(await upgradeStatus(ws)).toBe(101);
  expect((await echoRoundTrip(ws, payload)).equals(payload)).toBe(true);
  ws.close();
  const after = await bytesByClass(relayUrl);
  return new Map(
    [...after].map(([name, bytes]) => [name, (bytes - (before.get(name) ?? 0)) / payload.length]),
  );
}

beforeAll(async () => {
  echo = createServer((socket) => socket.pipe(socket));
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
  echoPort = (echo.address() as { port: number }).port;

  const { day, issuing } = await fixtureRelayKeys(dataDir);
  for (let i = 0; i < 5; i++) tickets.push(issueTicketV2(issuing, day).text);

  writeFileSync(
    configFile,
    offlineRelayConfig(dataDir, [
      '[tunnel]',
      `ports = [${echoPort}]`,
      'allowCidrs = ["127.0.0.1/32"]',
    ]),
  );
}, 60_000);

afterAll(async () => {
  await relays.killAll();
  await new Promise<void>((resolve) => echo.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

describe('paid grants across SIGKILL and restart', () => {
  it("a grant's token still opens a paid stream after the relay is killed and restarted", async () => {
    const first = await relays.spawn(configFile);
    const circuit = await CircuitClient.connect(first.circuitUrl);
    const [a0, a1, a2, a3, b0] = tickets;
    let topped = await circuit.request('ticket.redeem', { ticket: a0 ?? '' });
    for (const ticket of [a1, a2, a3]) {
      topped = await circuit.request('ticket.redeem', {
        ticket: ticket ?? '',
        grant: topped.token,
      });
    }
    const single = await circuit.request('ticket.redeem', { ticket: b0 ?? '' });
    // Killed right after the last answer: only what was committed before answering survives.
    first.child.kill('SIGKILL');
    expect(await first.exited, first.output()).toEqual({ code: null, signal: 'SIGKILL' });
    await circuit.close();

    // On disk: five tickets in the two grants, under the tokens' SHA-256 only.
    const db = new Database(join(dataDir, 'grants.sqlite'), { readonly: true });
    const rows = db
      .prepare<[], { id: Buffer; tickets: number }>(
        'SELECT grant_id AS id, sum(count) AS tickets FROM grant_tickets GROUP BY grant_id',
      )
      .all();
    db.close();
    const byId = new Map(rows.map((r) => [r.id.toString('base64url'), r.tickets]));
    expect(byId).toEqual(
      new Map([
        [grantId(topped.token), 4],
        [grantId(single.token), 1],
      ]),
    );

    const second = await relays.spawn(configFile);
    try {
      // Four tickets in the window: the top group; one ticket: the lower one (docs/design.md §8).
      const four = await carriedBy(second.url, topped.token);
      expect(four.get('group1')).toBe(2);
      expect(four.get('free')).toBe(0);
      const one = await carriedBy(second.url, single.token);
      expect(one.get('group4')).toBe(2);
      expect(one.get('free')).toBe(0);
      // The token is the only key: an unknown one is refused, as before the restart.
      const unknown = tunnel(second.url, 'A'.repeat(43));
      expect(await upgradeStatus(unknown)).toBe(401);
      // Spent tickets stay spent.
      const again = await CircuitClient.connect(second.circuitUrl);
      await expect(again.request('ticket.redeem', { ticket: b0 ?? '' })).rejects.toMatchObject({
        code: 32,
      });
      await again.close();
    } finally {
      second.child.kill('SIGTERM');
      expect((await second.exited).code, second.output()).toBe(0);
    }
  }, 90_000);
});
