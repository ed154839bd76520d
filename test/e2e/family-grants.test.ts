import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { CircuitClient } from '../../src/client/circuit-client.js';
import type { Relay } from '../../src/relay/relay.js';
import { mineTicket } from '../helpers/mine-ticket.js';
import { usePostgres } from '../helpers/postgres.js';
import { startTestRelay } from '../helpers/test-relay.js';
import { echoRoundTrip } from '../helpers/tunnel-stream.js';

/**
 * Grants across a family (issue 17): two instances on one database. A client that redeemed at
 * A may reach B next (one onion address over several backends): B finds A's grant in the
 * database for a tunnel stream and for a top-up, so the grant's tickets add up wherever they
 * were paid. A made-up token is still refused, the same way.
 */

const postgres = usePostgres();
const dirs: string[] = [];
let echo: Server;
let echoPort = 0;

beforeAll(async () => {
  echo = createServer((socket) => socket.pipe(socket));
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
  echoPort = (echo.address() as { port: number }).port;
});

afterAll(async () => {
  await new Promise<void>((resolve) => echo.close(() => resolve()));
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function tunnel(relay: Relay, token: string): WebSocket {
  return new WebSocket(`${relay.url.replace(/^http/, 'ws')}/v1/tunnel?to=127.0.0.1:${echoPort}`, {
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

async function tunnelStreams(relay: Relay): Promise<Record<string, number>> {
  const status = (await (await fetch(`${relay.url}/v1/status`)).json()) as {
    tunnel: { streams: Record<string, number> };
  };
  return status.tunnel.streams;
}

async function redeem(relay: Relay, ticket: string, topUp?: string) {
  const circuit = await CircuitClient.connect(`${relay.url.replace('http', 'ws')}/v1/circuit`);
  try {
    return await circuit.request('ticket.redeem', { ticket, ...(topUp ? { grant: topUp } : {}) });
  } finally {
    await circuit.close();
  }
}

describe('grants in a family of relays', () => {
  it("a grant paid at A opens paid streams at B, and B's top-up adds to it", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'powbridge-family-grants-'));
    dirs.push(dataDir);
    const storage = {
      url: await postgres().createDatabase('grants'),
      passwordFile: postgres().passwordFile,
    };
    const tunnelPolicy = { ports: [echoPort], allowCidrs: ['127.0.0.1/32'] };
    const { relay: a } = await startTestRelay({ dataDir, storage, tunnel: tunnelPolicy });
    let b: Relay | undefined;
    try {
      ({ relay: b } = await startTestRelay({ dataDir, storage, tunnel: tunnelPolicy }));
      const { ticket } = await mineTicket(a);
      const grant = await redeem(a, ticket);
      const now = Date.now() / 1000;
      // B has not seen it: started before A paid it.
      expect(b.tickets.redeemer.grants.lookup(grant.token, now)).toBeUndefined();

      const ws = tunnel(b, grant.token);
      expect(await upgradeStatus(ws)).toBe(101);
      const payload = Buffer.alloc(8 * 1024, 7);
      expect((await echoRoundTrip(ws, payload)).equals(payload)).toBe(true);
      const streams = await tunnelStreams(b);
      expect(streams.free ?? 0).toBe(0);
      expect(Object.values(streams).reduce((sum, n) => sum + n, 0)).toBe(1);
      ws.close();

      // A second ticket, mined at A, tops the grant up at B: two tickets, one grant.
      const { ticket: second } = await mineTicket(a);
      const topped = await redeem(b, second, grant.token);
      expect(topped.token).toBe(grant.token);
      expect(b.tickets.redeemer.grants.lookup(grant.token, Date.now() / 1000)).toMatchObject({
        tickets: 2,
      });

      // A token no instance issued: refused as on a single relay.
      expect(await upgradeStatus(tunnel(b, 'B'.repeat(43)))).toBe(401);
    } finally {
      await b?.close();
      await a.close();
    }
  });
});
