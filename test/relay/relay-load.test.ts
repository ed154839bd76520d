import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { RpcErrorCode } from '../../src/protocol/errors.js';
import type { Relay } from '../../src/relay/relay.js';
import { relayStatusWithPeersSchema } from '../../src/relay/status-schema.js';
import { MODULUS_BYTES } from '../../src/tickets/rsa-scheme.js';
import { encodeTicketV2 } from '../../src/tickets/ticket-v2.js';
import { parseMetrics } from '../helpers/metrics-text.js';
import { startTestRelay } from '../helpers/test-relay.js';

/**
 * A whole relay under its flood limits (docs/design.md §10.1): forged redemptions reach the
 * signature check (in the worker pool) only within the verification budget and are answered
 * 38 beyond it, a circuit past the unregistered cap gets 503, and every refusal shows in
 * /v1/status (`load`) and /metrics.
 */

let dir: string;
let relay: Relay;
const sockets: WebSocket[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'powbridge-relay-load-'));
  ({ relay } = await startTestRelay({
    dataDir: join(dir, 'relay'),
    limits: { maxVerificationsPerSecond: 1, maxUnregistered: 1 },
  }));
});

afterAll(async () => {
  for (const ws of sockets) ws.terminate();
  await relay.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Right format, today's published key, today's day, a signature of random bytes. */
function forgedTicket(): string {
  const terms = relay.tickets.terms();
  if (!terms) throw new Error('the relay has no issuing key');
  return encodeTicketV2({
    keyId: Buffer.from(terms.keyId, 'hex'),
    day: terms.day,
    nonce: new Uint8Array(randomBytes(32)),
    signature: new Uint8Array(randomBytes(MODULUS_BYTES)),
  });
}

async function get(path: string): Promise<{ status: number; body: string }> {
  const response = await fetch(`${relay.url}${path}`);
  return { status: response.status, body: await response.text() };
}

describe('a relay under forged redemptions and idle circuits', () => {
  it('sheds with 38 beyond the budget, refuses circuits past the cap, and counts both', async () => {
    const circuit = `${relay.url.replace('http', 'ws')}/v1/circuit`;
    const ws = new WebSocket(circuit);
    sockets.push(ws);
    await new Promise((resolve) => ws.once('open', resolve));

    // The one unregistered place is taken: the next circuit is refused before the handshake.
    const refused = await new Promise<number>((resolve) => {
      const second = new WebSocket(circuit);
      second.once('unexpected-response', (_request, response) => {
        resolve(response.statusCode ?? 0);
        second.terminate();
      });
      second.once('error', () => {});
    });
    expect(refused).toBe(503);

    // Five forged tickets at once: one unit of budget, so one check (30), the rest shed (38).
    const answers = new Map<number, number>();
    const all = new Promise<void>((resolve) =>
      ws.on('message', (data: Buffer) => {
        const { id, error } = JSON.parse(data.toString()) as {
          id: number;
          error: { code: number };
        };
        answers.set(id, error.code);
        if (answers.size === 5) resolve();
      }),
    );
    for (let id = 1; id <= 5; id++) {
      ws.send(
        JSON.stringify({
          jsonrpc: '2.0',
          id,
          method: 'ticket.redeem',
          params: { ticket: forgedTicket() },
        }),
      );
    }
    await all;
    const codes = [...answers.values()];
    const shed = codes.filter((c) => c === RpcErrorCode.relayOverloaded).length;
    expect(codes.filter((c) => c === RpcErrorCode.badTicketSignature).length).toBeGreaterThan(0);
    expect(shed).toBeGreaterThan(0);
    expect(shed + codes.filter((c) => c === RpcErrorCode.badTicketSignature).length).toBe(5);

    const status = relayStatusWithPeersSchema.parse(JSON.parse((await get('/v1/status')).body));
    expect(status.load).toEqual({
      overloaded: { redeem: shed, share: 0 },
      circuits: {
        unregistered: 1,
        refusedUnregistered: 1,
        registerTimeouts: 0,
        refusedFull: 0,
        waiting: 0,
      },
    });
    expect(status.tickets?.refused.badSignature).toBe(5 - shed);

    const metrics = parseMetrics((await get('/metrics')).body);
    expect(metrics.get('powbridge_overloaded_total{request="redeem"}')).toBe(shed);
    expect(metrics.get('powbridge_overloaded_total{request="share"}')).toBe(0);
    expect(metrics.get('powbridge_circuits_refused_total{reason="unregistered-cap"}')).toBe(1);
    expect(metrics.get('powbridge_circuits_refused_total{reason="register-timeout"}')).toBe(0);
    expect(metrics.get('powbridge_circuits_refused_total{reason="full"}')).toBe(0);
    expect(metrics.get('powbridge_circuits_unregistered')).toBe(1);
    expect(metrics.get('powbridge_circuits_waiting')).toBe(0);
  });
});
