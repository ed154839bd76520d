import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CircuitClient } from '../../src/client/circuit-client.js';
import type { JobParams, RegisterResult } from '../../src/protocol/messages.js';
import { parseRelayConfig } from '../../src/relay/config.js';
import { type Relay, startRelay } from '../../src/relay/relay.js';
import { hashDifficulty } from '../../src/work/target.js';
import { type GroundShare, grindShare } from '../helpers/grind.js';
import { waitFor } from '../helpers/litecoind.js';
import { notifyParams, ScriptedPool } from '../helpers/scripted-pool.js';
import { handshake, TestMiner } from '../helpers/stratum-miner.js';

/**
 * Pool mode end to end: the relay's Stratum client talks to the scripted pool in test/
 * (regtest cannot produce a share that is not a block), a circuit client mines below the
 * pool's difficulty, and only shares meeting it reach the pool.
 */

const POOL_DIFFICULTY = 2 ** -24; // ~256 sha256d hashes per pool share
const CLIENT_DIFFICULTY = 2 ** -28; // ~16 hashes per client share

let pool: ScriptedPool;
let relay: Relay;
let client: CircuitClient;
let session: RegisterResult;
let job: JobParams;
const dataDir = mkdtempSync(join(tmpdir(), 'powbridge-e2e-pool-'));

interface Status {
  shares: { accepted: number };
  forwarded: { accepted: number; rejected: number; lastRejectReason: string | null };
  upstream: { state: string; url: string | null };
}

async function status(): Promise<Status> {
  return (await (await fetch(`${relay.url}/v1/status`)).json()) as Status;
}

/** A share meeting the client difficulty, and (or not) the pool's. */
async function findShare(meetsPool: boolean, from: number): Promise<GroundShare> {
  for (let start = from; ; start += 1) {
    const share = await grindShare(
      'sha256d',
      job,
      session.extranonce1,
      session.extranonce2Size,
      session.difficulty,
      {
        startNonce: start,
        maxHashes: 100_000,
      },
    );
    if (hashDifficulty(share.hash, 'sha256d') >= POOL_DIFFICULTY === meetsPool) return share;
    start = Number.parseInt(share.nonce, 16);
  }
}

async function submit(share: GroundShare) {
  return client.request('mining.submit', {
    jobId: share.jobId,
    extranonce2: share.extranonce2,
    ntime: share.ntime,
    nonce: share.nonce,
  });
}

beforeAll(async () => {
  pool = await ScriptedPool.start({ extranonce1: 'f0000001', extranonce2Size: 8 });
  pool.on('message', (m, c) => {
    if (m.method === 'mining.authorize') {
      setImmediate(() => {
        c.notify('mining.set_difficulty', [POOL_DIFFICULTY]);
        c.notify(
          'mining.notify',
          notifyParams('pool-job-1', true, Math.floor(Date.now() / 1000).toString(16)),
        );
      });
    }
  });
  relay = await startRelay(
    parseRelayConfig({
      relay: { listen: '127.0.0.1:0', stratumListen: '127.0.0.1:0', dataDir },
      source: {
        type: 'pool',
        algorithm: 'sha256d',
        pools: [{ url: pool.url, user: 'operator.relay1', password: 'x' }],
      },
      difficulty: {
        initial: CLIENT_DIFFICULTY,
        min: 2 ** -30,
        ticketDifficulty: CLIENT_DIFFICULTY,
      },
    }),
  );
  await waitFor('upstream live', () => Promise.resolve(relay.stratifier.upstreamState === 'live'));
  client = await CircuitClient.connect(`${relay.url.replace('http', 'ws')}/v1/circuit`);
  const firstJob = new Promise<JobParams>((resolve) => client.once('job', resolve));
  session = await client.request('mining.register', { agent: 'e2e', mode: 'tickets' });
  job = await firstJob;
}, 30_000);

afterAll(async () => {
  await client?.close();
  await relay?.close();
  await pool?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('relay in pool mode against the scripted pool', () => {
  it('hands clients a lower difficulty than the pool and its extranonce2 minus the slot', () => {
    expect(session.difficulty).toBe(CLIENT_DIFFICULTY);
    expect(session.extranonce2Size).toBe(6);
    expect(session.extranonce1).toHaveLength(4);
  });

  it('accepts a share below the pool difficulty without forwarding it', async () => {
    const share = await findShare(false, 0);
    const result = await submit(share);
    expect(result.accepted).toBe(true);
    expect(result.credit).toBeCloseTo(1, 9);
    await new Promise((r) => setTimeout(r, 100));
    expect(pool.received('mining.submit')).toHaveLength(0);
    expect((await status()).shares.accepted).toBe(1);
  });

  it('forwards a share meeting the pool difficulty, as extranonce2 = slot ‖ client extranonce2', async () => {
    const share = await findShare(true, 0);
    await submit(share);
    const sent = await pool.waitFor('mining.submit');
    expect(sent.params).toEqual([
      'operator.relay1',
      'pool-job-1',
      session.extranonce1 + share.extranonce2,
      share.ntime,
      share.nonce,
    ]);
    await waitFor('forward recorded', async () => (await status()).forwarded.accepted === 1);
  });

  it('records a pool rejection', async () => {
    pool.handlers['mining.submit'] = (m, c) =>
      c.reply(m.id, null, [23, 'Low difficulty share', null]);
    const share = await findShare(true, 1_000_000);
    const result = await submit(share);
    expect(result.accepted).toBe(true); // the relay's own verdict stands
    await waitFor('rejection recorded', async () => (await status()).forwarded.rejected === 1);
    const s = await status();
    expect(s.forwarded.lastRejectReason).toMatch(/Low difficulty share/);
    expect(s.upstream.url).toBe(pool.url);
  });

  it('a share for a job of a previous upstream session is never forwarded', async () => {
    const stale = await findShare(true, 2_000_000);
    const before = pool.received('mining.submit').length;
    // The pool drops the connection: the relay reconnects (new session, new job).
    const reconnected = pool.waitFor(
      (m) => m.method === 'mining.authorize' && m.connection === 1,
      10_000,
    );
    pool.connections[0]?.destroy();
    await reconnected;
    await expect(submit(stale)).rejects.toMatchObject({ code: 21 });
    await new Promise((r) => setTimeout(r, 100));
    expect(pool.received('mining.submit')).toHaveLength(before);
  }, 20_000);

  it('a standard miner on the Stratum port mines as a donor through the relay to the pool', async () => {
    const port = Number((relay.stratumAddress ?? '').split(':')[1]);
    const miner = await TestMiner.connect(port);
    try {
      const work = await handshake(miner);
      const before = pool.received('mining.submit').length;
      pool.handlers['mining.submit'] = (m, c) => c.reply(m.id, true);
      for (let start = 5_000_000; ;) {
        const share = await grindShare(
          'sha256d',
          work.job,
          work.extranonce1,
          work.extranonce2Size,
          work.difficulty,
          {
            startNonce: start,
            extranonce2: 7,
            maxHashes: 100_000,
          },
        );
        start = Number.parseInt(share.nonce, 16) + 1;
        if (hashDifficulty(share.hash, 'sha256d') < POOL_DIFFICULTY) continue;
        const reply = await miner.request('mining.submit', [
          'donor',
          share.jobId,
          share.extranonce2,
          share.ntime,
          share.nonce,
        ]);
        expect(reply.result).toBe(true);
        await waitFor('forwarded', () =>
          Promise.resolve(pool.received('mining.submit').length > before),
        );
        const sent = pool.received('mining.submit').at(-1);
        expect((sent?.params as string[])[2]).toBe(work.extranonce1 + share.extranonce2);
        break;
      }
    } finally {
      await miner.close();
    }
  }, 20_000);
});
