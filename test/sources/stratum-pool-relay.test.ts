import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CircuitClient, type CircuitClientEvents } from '../../src/client/circuit-client.js';
import { parseRelayConfig } from '../../src/relay/config.js';
import { type Relay, startRelay } from '../../src/relay/relay.js';
import { waitFor } from '../helpers/litecoind.js';
import {
  NODE_STRATUM_POOL_IGNORES,
  notifyParams,
  ScriptedPool,
  waitForEvent,
} from '../helpers/scripted-pool.js';

/**
 * The pool client inside a relay with its production defaults (request timeout 10 s, backoff
 * 0.5 s doubling to 4 s), against a pool that behaves like node-stratum-pool (never answers
 * mining.configure): while the only pool is down, circuit clients stay connected and are told
 * (`relay.state`); when it is back, they are told again and get new work. Timing targets are
 * measured in bench/pool-recovery.ts and the retry schedule is checked exactly in
 * stratum-pool-recovery.test.ts; the bound here only tells the fix apart from the old 10 s
 * configure stall.
 */

let pool: ScriptedPool;
let relay: Relay;
let client: CircuitClient;
const dataDir = mkdtempSync(join(tmpdir(), 'powbridge-pool-outage-'));

async function nodeStratumPool(port?: number): Promise<ScriptedPool> {
  const started = await ScriptedPool.start({
    extranonce1: port === undefined ? 'f0000001' : 'f0000002',
    extranonce2Size: 8,
    ...(port === undefined ? {} : { port }),
  });
  started.ignore(...NODE_STRATUM_POOL_IGNORES);
  const subscribe = started.handlers['mining.subscribe'];
  started.handlers['mining.subscribe'] = (m, c) => {
    subscribe?.(m, c);
    c.notify('mining.set_difficulty', [2 ** -24]);
    c.notify('mining.notify', notifyParams(`job-${c.index}`));
  };
  return started;
}

function nextRelayState(upstream: 'live' | 'down'): Promise<unknown> {
  return waitForEvent<CircuitClientEvents, 'relayState'>(
    client,
    'relayState',
    ([state]) => state.upstream === upstream,
    10_000,
  );
}

beforeAll(async () => {
  pool = await nodeStratumPool();
  relay = await startRelay(
    parseRelayConfig({
      relay: { listen: '127.0.0.1:0', dataDir },
      source: {
        type: 'pool',
        algorithm: 'sha256d',
        pools: [{ url: pool.url, user: 'operator.relay1', password: 'x' }],
      },
      difficulty: { initial: 2 ** -28, min: 2 ** -30, ticketDifficulty: 2 ** -28 },
    }),
  );
  await waitFor('upstream live', () => Promise.resolve(relay.stratifier.upstreamState === 'live'));
  client = await CircuitClient.connect(`${relay.url.replace('http', 'ws')}/v1/circuit`);
  const firstJob = waitForEvent<CircuitClientEvents, 'job'>(client, 'job');
  await client.request('mining.register', { agent: 'outage-test', mode: 'tickets' });
  await firstJob;
}, 30_000);

afterAll(async () => {
  await client?.close();
  await relay?.close();
  await pool?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('relay with a pool that goes away and comes back', () => {
  it('keeps clients connected and tells them, then resumes with new work', async () => {
    const closes: unknown[] = [];
    client.on('close', (info) => closes.push(info));

    const down = nextRelayState('down');
    const port = pool.port;
    await pool.close();
    await down;
    // Down for a few backoff rounds (0.25–0.5 s, 0.5–1 s, 1–2 s, …).
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect(relay.stratifier.upstreamState).not.toBe('live');

    const live = nextRelayState('live');
    const job = waitForEvent<CircuitClientEvents, 'job'>(client, 'job', () => true, 10_000);
    pool = await nodeStratumPool(port);
    const back = performance.now();
    await live;
    const [params] = await job;
    // No 10 s configure stall on the way back (bench: back → live ≤ 4 s and a handshake).
    expect(performance.now() - back).toBeLessThan(10_000);
    expect(params.clean).toBe(true);
    expect(closes).toEqual([]);
    expect(pool.received('mining.authorize')).toHaveLength(1);
  }, 30_000);
});
