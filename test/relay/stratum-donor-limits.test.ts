import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CircuitClient } from '../../src/client/circuit-client.js';
import { RpcErrorCode } from '../../src/protocol/errors.js';
import type { Relay } from '../../src/relay/relay.js';
import { relayStatusWithPeersSchema } from '../../src/relay/status-schema.js';
import { STRATUM_DROP_REASONS } from '../../src/relay/stratum-miner-limits.js';
import { parseMetrics } from '../helpers/metrics-text.js';
import { eventually, handshake, TestMiner, within } from '../helpers/stratum-miner.js';
import { startTestRelay } from '../helpers/test-relay.js';

/**
 * Issue 15's measurement, scaled down: with maxClients = 500, 600 Stratum connections used to
 * lock every circuit client out ("relay is full"). Here the whole relay, configured from
 * limits.maxClients = 5 and limits.maxStratumClients = 10, takes a crowd of 20 standard miners
 * on its Stratum port: ten work, ten are refused and closed, and circuit clients still get
 * all five of their places. /v1/status and /metrics count the refusals.
 */

const dataDir = mkdtempSync(join(tmpdir(), 'powbridge-stratum-limits-'));
let relay: Relay;
const miners: TestMiner[] = [];
/** The crowd's miners that got a place. */
let working: TestMiner[] = [];
const circuits: CircuitClient[] = [];

beforeAll(async () => {
  ({ relay } = await startTestRelay({
    dataDir,
    stratumListen: '127.0.0.1:0',
    limits: { maxClients: 5, maxStratumClients: 10 },
    upstreamDifficulty: 1e12,
  }));
});

afterAll(async () => {
  await Promise.all(miners.map((miner) => miner.close()));
  await Promise.all(circuits.map((circuit) => circuit.close()));
  await relay?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

async function stratumMiner(): Promise<TestMiner> {
  const port = Number(relay.stratumAddress?.split(':').at(-1));
  const miner = await TestMiner.connect(port);
  miners.push(miner);
  return miner;
}

async function circuit(): Promise<CircuitClient> {
  const client = await CircuitClient.connect(`${relay.url.replace('http', 'ws')}/v1/circuit`);
  circuits.push(client);
  return client;
}

describe('Stratum miners have places of their own', () => {
  it('a crowd on the Stratum port does not stop circuit clients from registering', async () => {
    const crowd = await Promise.all(Array.from({ length: 20 }, () => stratumMiner()));
    const outcomes = await Promise.allSettled(crowd.map((miner) => handshake(miner)));
    working = crowd.filter((_, i) => outcomes[i]?.status === 'fulfilled');
    const refused = crowd.filter((_, i) => outcomes[i]?.status === 'rejected');
    expect(working).toHaveLength(10);
    expect(refused).toHaveLength(10);
    await within(Promise.all(refused.map((miner) => miner.closed)), 'refused miners closed');
    expect(working.every((miner) => miner.open)).toBe(true);

    // Every circuit place is still there, and only those.
    for (let i = 0; i < 5; i++) {
      const client = await circuit();
      const session = await client.request('mining.register', { agent: `c${i}`, mode: 'tickets' });
      expect(session.extranonce1).toMatch(/^[0-9a-f]{4}$/);
    }
    const sixth = await circuit();
    await expect(
      sixth.request('mining.register', { agent: 'c5', mode: 'tickets' }),
    ).rejects.toMatchObject({
      code: RpcErrorCode.relayFull,
      message: 'relay is full, retry later',
      data: { retryAfter: 30 },
    });
    expect(relay.stratifier.clientsOn('stratum')).toBe(10);
    expect(relay.stratifier.clientsOn('circuit')).toBe(5);
  });

  it('/v1/status and /metrics count the Stratum port’s miners and its refusals by reason', async () => {
    const status = relayStatusWithPeersSchema.parse(
      await (await fetch(`${relay.url}/v1/status`)).json(),
    );
    expect(status.clients).toBe(15);
    const dropped = Object.fromEntries(STRATUM_DROP_REASONS.map((reason) => [reason, 0]));
    expect(status.stratum).toEqual({ clients: 10, dropped: { ...dropped, full: 10 } });

    const metrics = parseMetrics(await (await fetch(`${relay.url}/metrics`)).text());
    expect(metrics.get('powbridge_stratum_clients')).toBe(10);
    expect(metrics.get('powbridge_stratum_dropped_total{reason="full"}')).toBe(10);
    expect(metrics.get('powbridge_stratum_dropped_total{reason="no-share"}')).toBe(0);

    // A donor leaving frees its place for the next one, not for a circuit.
    await working[0]?.close();
    await eventually(() => relay.stratifier.clientsOn('stratum') === 9, 'a Stratum place freed');
    await handshake(await stratumMiner());
    expect(relay.stratifier.clientsOn('stratum')).toBe(10);
  });
});
