import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CircuitClient } from '../../src/client/circuit-client.js';
import type { JobParams } from '../../src/protocol/messages.js';
import { CircuitConnector } from '../../src/relay/circuit-connector.js';
import type { ClientChannel } from '../../src/relay/client-session.js';
import { Stratifier } from '../../src/relay/stratifier.js';
import { headerFromJob } from '../../src/work/header.js';
import { u32ToHex } from '../../src/work/hex.js';
import type { Job } from '../../src/work/job.js';
import { createPowHasher } from '../../src/work/pow.js';
import { hashDifficulty, MIN_DIFFICULTY } from '../../src/work/target.js';
import { ManualSource } from '../helpers/manual-source.js';

/**
 * Per-client difficulty per job (docs/design.md §4.3, §4.4): a retarget sends the new
 * difficulty, then the current work under a new id; every id is judged at the difficulty it
 * was sent with.
 */

type Sent = { difficulty: number } | { job: Job } | { extranonce: number };

/** What the stratifier sends one client, in order. */
class RecordingChannel implements ClientChannel {
  readonly sent: Sent[] = [];
  sendJob(job: Job): void {
    this.sent.push({ job });
  }
  sendDifficulty(difficulty: number): void {
    this.sent.push({ difficulty });
  }
  sendExtranonce(_extranonce1: string, extranonce2Size: number): void {
    this.sent.push({ extranonce: extranonce2Size });
  }
  sendVersionMask(): void {}
  sendUpstreamState(): void {}
  close(): void {}

  get jobs(): Job[] {
    return this.sent.flatMap((s) => ('job' in s ? [s.job] : []));
  }

  /** Job id → the difficulty last announced before it; throws on an id sent at two. */
  difficultyById(start: number): Map<string, number> {
    const byId = new Map<string, number>();
    let difficulty = start;
    for (const s of this.sent) {
      if ('difficulty' in s) difficulty = s.difficulty;
      if (!('job' in s)) continue;
      const before = byId.get(s.job.jobId);
      if (before !== undefined && before !== difficulty) {
        throw new Error(`job ${s.job.jobId} sent at ${before} and at ${difficulty}`);
      }
      byId.set(s.job.jobId, difficulty);
    }
    return byId;
  }
}

const stops: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

async function start(options: { initial: number; vardiffTickMs?: number }) {
  let seconds = 0;
  const source = new ManualSource('sha256d');
  const stratifier = new Stratifier({
    source,
    algorithm: 'sha256d',
    hasher: await createPowHasher('sha256d'),
    initialDifficulty: options.initial,
    ticketDifficulty: MIN_DIFFICULTY,
    vardiff: { minDifficulty: MIN_DIFFICULTY },
    now: () => seconds,
    vardiffTickMs: options.vardiffTickMs ?? 3_600_000,
  });
  stratifier.start();
  stops.push(() => stratifier.stop());
  const credited: number[] = [];
  stratifier.on('share', (s) => {
    if (s.code === null) credited.push(s.difficulty);
  });
  source.goLive({ difficulty: 1e12 });
  const clock = {
    set: (s: number) => {
      seconds = s;
    },
  };
  return { source, stratifier, clock, credited };
}

function register(stratifier: Stratifier) {
  const channel = new RecordingChannel();
  const { session } = stratifier.register(channel, 'tickets');
  stratifier.sendCurrentWork(session);
  return { channel, session };
}

let nextNonce = 0x10000000;

/** A share of `job` whose hash meets `low` and misses `high` (a fresh nonce each call). */
async function shareBetween(
  client: { extranonce1: string; extranonce2Size: number },
  job: Job | JobParams,
  low: number,
  high = 1e12,
) {
  const hasher = await createPowHasher('sha256d');
  const extranonce2 = '00'.repeat(client.extranonce2Size);
  for (;;) {
    const share = { jobId: job.jobId, extranonce2, ntime: job.ntime, nonce: u32ToHex(nextNonce++) };
    const { header } = headerFromJob(job, client.extranonce1, share, null);
    const achieved = hashDifficulty(await hasher(header), 'sha256d');
    if (achieved >= low && achieved < high) return share;
  }
}

describe('stratifier: a retarget and the jobs sent before it', () => {
  it('sends set_difficulty, then the current work under a new id; each id is judged at the difficulty it was sent with', async () => {
    const { stratifier, clock, credited } = await start({ initial: MIN_DIFFICULTY });
    const { channel, session } = register(stratifier);
    const [first] = channel.jobs;
    if (!first) throw new Error('no job');

    // Four shares in a third of a second: far above one per 15 s, so vardiff retargets early.
    for (let i = 0; i < 4; i++) {
      clock.set(i * 0.1);
      await stratifier.submit(session, await shareBetween(session, first, MIN_DIFFICULTY));
    }
    const raised = 4 * MIN_DIFFICULTY;
    const resent = channel.jobs[1];
    if (!resent) throw new Error('no job');
    expect(channel.sent.slice(1)).toEqual([{ difficulty: raised }, { job: resent }]);
    // The same work, not clean, under a new id.
    expect(resent.jobId).not.toBe(first.jobId);
    expect({ ...resent, jobId: first.jobId }).toEqual({ ...first, clean: false });

    // The miner still on the first job, at the old difficulty: accepted, credited at it.
    clock.set(10);
    const old = await shareBetween(session, first, MIN_DIFFICULTY, raised);
    await expect(stratifier.submit(session, old)).resolves.toMatchObject({ accepted: true });
    // The same kind of hash under the new id is too low: 23.
    const low = await shareBetween(session, resent, MIN_DIFFICULTY, raised);
    await expect(stratifier.submit(session, low)).rejects.toMatchObject({ code: 23 });
    await expect(
      stratifier.submit(session, await shareBetween(session, resent, raised)),
    ).resolves.toMatchObject({ accepted: true });
    expect(credited.slice(4)).toEqual([MIN_DIFFICULTY, raised]);
    expect(session.credit).toBe(4 + 1 + 4);
    // One difficulty per id, over everything sent.
    expect([...channel.difficultyById(MIN_DIFFICULTY).values()]).toEqual([MIN_DIFFICULTY, raised]);
  });

  it('after a retarget down, old work meeting the new lower difficulty is accepted at it', async () => {
    const start2 = 2 ** -30;
    const { stratifier, clock, credited } = await start({ initial: start2, vardiffTickMs: 5 });
    const { channel, session } = register(stratifier);
    const [first] = channel.jobs;
    if (!first) throw new Error('no job');
    // No share for a minute: the timer steps it down by 4 (to the floor).
    clock.set(61);
    await vi.waitFor(() => expect(channel.sent).toContainEqual({ difficulty: MIN_DIFFICULTY }));
    // A miner that applies the new difficulty to the work it has: accepted, at the new one.
    const share = await shareBetween(session, first, MIN_DIFFICULTY, start2);
    await expect(stratifier.submit(session, share)).resolves.toMatchObject({ accepted: true });
    expect(credited).toEqual([MIN_DIFFICULTY]);
  });

  it('an extranonce change sends the current job again as clean work: its own id at the same difficulty, a new id after a retarget', async () => {
    const { source, stratifier, clock } = await start({ initial: MIN_DIFFICULTY });
    const steady = register(stratifier);
    const moved = register(stratifier);
    const [first] = moved.channel.jobs;
    if (!first) throw new Error('no job');
    for (let i = 0; i < 4; i++) {
      clock.set(i * 0.1);
      await stratifier.submit(moved.session, await shareBetween(moved.session, first, 0));
    }
    const ids = moved.channel.jobs.map((j) => j.jobId);
    expect(ids).toHaveLength(2);

    source.setTerms({ extranonce2Size: 7, difficulty: 1e12 });
    expect(steady.channel.sent.slice(-2)).toEqual([
      { extranonce: 5 },
      { job: { ...first, clean: true } },
    ]);
    const again = moved.channel.jobs.at(-1);
    if (!again) throw new Error('no job');
    expect(moved.channel.sent.at(-2)).toEqual({ extranonce: 5 });
    expect({ ...again, jobId: first.jobId }).toEqual({ ...first, clean: true });
    expect(ids).not.toContain(again.jobId);
    moved.channel.difficultyById(MIN_DIFFICULTY); // throws if an id came at two difficulties
    // Jobs from before the change are void for both; the clean one is good.
    const stale = await shareBetween(moved.session, first, 0);
    await expect(stratifier.submit(moved.session, stale)).rejects.toMatchObject({ code: 21 });
    const fresh = await shareBetween(moved.session, again, 4 * MIN_DIFFICULTY);
    await expect(stratifier.submit(moved.session, fresh)).resolves.toMatchObject({
      accepted: true,
    });
  });
});

describe('circuit clients', () => {
  it('get mining.set_difficulty, then mining.job under a new id; the old id keeps its difficulty', async () => {
    const { stratifier } = await start({ initial: MIN_DIFFICULTY });
    const connector = new CircuitConnector(stratifier);
    const server = createServer();
    connector.attach(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    stops.push(
      () => new Promise<void>((resolve) => server.close(() => resolve())),
      () => connector.close(),
    );
    const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/v1/circuit`;
    const client = await CircuitClient.connect(url, { timeoutMs: 5_000 });
    stops.push(() => client.close());
    const log: string[] = [];
    const jobs: JobParams[] = [];
    client.on('difficulty', (d) => log.push(`difficulty ${d}`));
    client.on('job', (job) => {
      log.push(`job ${job.clean}`);
      jobs.push(job);
    });
    const registered = await client.request('mining.register', { agent: 'a', mode: 'tickets' });
    await vi.waitFor(() => expect(jobs).toHaveLength(1));
    const [first] = jobs;
    if (!first) throw new Error('no job');
    const session = registered;

    // The clock is frozen: four shares at once are far too fast.
    for (let i = 0; i < 4; i++) {
      await client.request('mining.submit', await shareBetween(session, first, MIN_DIFFICULTY));
    }
    await vi.waitFor(() => expect(jobs).toHaveLength(2));
    expect(log).toEqual(['job true', `difficulty ${4 * MIN_DIFFICULTY}`, 'job false']);
    expect(jobs[1]?.jobId).not.toBe(first.jobId);
    expect({ ...jobs[1], jobId: first.jobId }).toEqual({ ...first, clean: false });
    const old = await shareBetween(session, first, MIN_DIFFICULTY, 4 * MIN_DIFFICULTY);
    await expect(client.request('mining.submit', old)).resolves.toMatchObject({ credit: 5 });
  });
});
