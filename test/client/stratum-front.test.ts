import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CircuitSource } from '../../src/client/circuit-source.js';
import { startStratumFront } from '../../src/client/stratum-front.js';
import { grindShare } from '../helpers/grind.js';
import { waitFor } from '../helpers/litecoind.js';
import { startTestRelay } from '../helpers/test-relay.js';
import { CpuMiner, handshake, SimClock, TestMiner } from '../helpers/stratum-miner.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('client Stratum front (--stratum-listen)', () => {
  it("a standard miner's shares go up the circuit and earn this client credit", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'powbridge-front-'));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const { relay } = await startTestRelay({
      dataDir,
      clientDifficulty: 2 ** -28,
      upstreamDifficulty: 1e12,
    });
    cleanups.push(() => relay.close());

    const source = new CircuitSource({
      url: `${relay.url.replace('http', 'ws')}/v1/circuit`,
      mode: 'tickets',
    });
    cleanups.push(() => source.stop());
    source.start();
    await waitFor('registered', () => Promise.resolve(source.status().state === 'live'));
    const front = await startStratumFront({ source, host: '127.0.0.1', port: 0 });
    cleanups.push(() => front.close());

    const miner = await TestMiner.connect(front.address.port);
    cleanups.push(() => miner.close());
    const work = await handshake(miner);
    // Local miners mine at most at the relay's difficulty, in a slot of our extranonce2.
    expect(work.difficulty).toBeLessThanOrEqual(2 ** -28);
    expect(work.extranonce2Size).toBe(4);
    const share = await grindShare(
      'sha256d',
      work.job,
      work.extranonce1,
      work.extranonce2Size,
      2 ** -28,
      {
        maxHashes: 100_000,
      },
    );
    const reply = await miner.request('mining.submit', [
      'worker',
      share.jobId,
      share.extranonce2,
      share.ntime,
      share.nonce,
    ]);
    expect(reply.result).toBe(true);
    // The relay credited our circuit for the share the local miner found.
    await waitFor('credit', () => Promise.resolve(source.credit > 0));
    expect(source.credit).toBeCloseTo(1, 6);
    const status = (await (await fetch(`${relay.url}/v1/status`)).json()) as {
      shares: { accepted: number };
    };
    expect(status.shares.accepted).toBe(1);
  }, 30_000);
});

describe('client Stratum front: vardiff with a cpuminer-like miner', () => {
  it('retargets a fast local miner several times with no honest share rejected, here or at the relay', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'powbridge-front-'));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const relayDifficulty = 2 ** -24;
    const { relay } = await startTestRelay({
      dataDir,
      clientDifficulty: relayDifficulty,
      ticketDifficulty: relayDifficulty,
      upstreamDifficulty: 1e12,
    });
    cleanups.push(() => relay.close());
    const source = new CircuitSource({
      url: `${relay.url.replace('http', 'ws')}/v1/circuit`,
      mode: 'tickets',
    });
    cleanups.push(() => source.stop());
    source.start();
    await waitFor('registered', () => Promise.resolve(source.status().state === 'live'));
    // The front's vardiff runs on simulated time: the local miner moves it on by 1/256 s per
    // hash. (The relay's runs on real time: it sees the shares the front forwards.)
    const clock = new SimClock();
    const front = await startStratumFront({ source, host: '127.0.0.1', port: 0, now: clock.now });
    cleanups.push(() => front.close());

    const miner = await TestMiner.connect(front.address.port);
    cleanups.push(() => miner.close());
    // It asks for less than the relay's difficulty (the front's ceiling): 16 hashes a share.
    expect((await miner.request('mining.suggest_difficulty', [2 ** -28])).result).toBe(true);
    const work = await handshake(miner);
    expect(work.difficulty).toBe(2 ** -28);
    const cpu = new CpuMiner(miner, work, { hashesPerSecond: 256, clock, threads: 4 });
    await cpu.mine(() => clock.now() >= 600);

    expect(cpu.rejected).toEqual([]);
    expect(cpu.shares.every((s) => s.code === null)).toBe(true);
    // Several retargets, up by at least 6 powers of two (15 s a share is about 2^-20.1).
    expect(cpu.retargets.length).toBeGreaterThanOrEqual(3);
    expect(cpu.difficulty).toBeGreaterThanOrEqual(2 ** -22);
    expect(cpu.shares.filter((s) => s.oldWork).length).toBeGreaterThan(0);
    // What met the relay's difficulty went up the circuit, and the relay took all of it,
    // though it retargeted this circuit meanwhile (set_difficulty, then new job ids; at
    // least twice: the front forwards in real time far faster than one share per 15 s).
    const status = (await (await fetch(`${relay.url}/v1/status`)).json()) as {
      shares: { accepted: number; rejected: Record<string, number> };
    };
    expect(status.shares.accepted).toBeGreaterThan(0);
    const rejected = Object.values(status.shares.rejected);
    expect(rejected).toEqual(rejected.map(() => 0));
    expect(source.status().terms?.difficulty).toBeGreaterThanOrEqual(2 ** -20);
    await waitFor('credit', () => Promise.resolve(source.credit > 0));
  }, 60_000);
});
