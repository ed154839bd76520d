import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RpcErrorCode } from '../../src/protocol/errors.js';
import { type ClientChannel, ClientSession } from '../../src/relay/client-session.js';
import {
  hashesPerDifficulty,
  isStaleOutcome,
  RECENT_BLOCKS,
  RelayStats,
  SHARE_REJECT_REASONS,
  shareRejectReason,
} from '../../src/relay/stats.js';
import type { Stratifier } from '../../src/relay/stratifier.js';
import { type StratifierEvents } from '../../src/relay/stratifier.js';
import { DEFAULT_VARDIFF, Vardiff } from '../../src/relay/vardiff.js';
import type { SourceState, UpstreamTerms } from '../../src/sources/work-source.js';
import type { Algorithm } from '../../src/work/algorithm.js';
import { headerFromJob } from '../../src/work/header.js';
import { u32ToHex } from '../../src/work/hex.js';
import type { Job, ShareSubmission } from '../../src/work/job.js';
import { createPowHasher, type PowHasher } from '../../src/work/pow.js';
import { difficultyToTarget, hashMeetsTarget, nbitsToTarget } from '../../src/work/target.js';
import { ManualSource } from '../helpers/manual-source.js';
import { startTestStratifier } from '../helpers/test-stratifier.js';

/** Stands in for the stratifier: the test emits exactly the events it wants counted. */
class FakeStratifier extends EventEmitter<StratifierEvents> {
  clientCount = 0;
  upstreamState: SourceState = 'connecting';
  upstreamTerms: UpstreamTerms | null = null;
  constructor(readonly algorithm: Algorithm = 'sha256d') {
    super();
  }
}

const silentChannel: ClientChannel = {
  sendJob: () => undefined,
  sendDifficulty: () => undefined,
  sendExtranonce: () => undefined,
  sendVersionMask: () => undefined,
  sendUpstreamState: () => undefined,
  close: () => undefined,
};

const session = new ClientSession(1, 'tickets', silentChannel, new Vardiff(DEFAULT_VARDIFF, 1, 0));
const TERMS: UpstreamTerms = {
  session: 1,
  extranonce1: 'f000000d',
  extranonce2Size: 8,
  difficulty: 64,
  versionMask: null,
};

function zeroRejects(): Record<string, number> {
  return Object.fromEntries(SHARE_REJECT_REASONS.map((r) => [r, 0]));
}

describe('shareRejectReason', () => {
  it('maps each share code to a stable label and anything else to "other"', () => {
    expect([20, 21, 22, 23, 24, 25].map((code) => shareRejectReason(code))).toEqual([
      'other',
      'stale',
      'duplicate',
      'low-difficulty',
      'unauthorized',
      'not-registered',
    ]);
    expect(shareRejectReason(RpcErrorCode.invalidParams)).toBe('other');
    expect(shareRejectReason(99)).toBe('other');
  });
});

describe('isStaleOutcome', () => {
  it('tells a late block or share from a bad one', () => {
    const stale = [
      { reason: 'stale block: height 215 is already solved' }, // our getblocktemplate source
      { reason: 'Stale share' },
      { reason: 'Job not found (=stale)' },
      { reason: 'whatever the pool says', code: RpcErrorCode.jobNotFound },
      { reason: 'duplicate' }, // submitblock (BIP22): the node has it already
      { reason: 'duplicate-inconclusive' },
      { reason: 'inconclusive' }, // valid, on a side chain
    ];
    const bad = [
      { reason: 'bad-txns' },
      { reason: 'high-hash' },
      { reason: 'rejected' },
      { reason: 'low difficulty share', code: RpcErrorCode.lowDifficulty },
      { reason: 'submitblock failed: timeout' },
      { reason: 'notstale' },
    ];
    expect(stale.filter((o) => !isStaleOutcome(o))).toEqual([]);
    expect(bad.filter((o) => isStaleOutcome(o))).toEqual([]);
  });
});

describe('hashesPerDifficulty', () => {
  it('is 2^256 / diff-1 target: about 2^32 for sha256d and 2^16 for scrypt', () => {
    expect(hashesPerDifficulty('sha256d')).toBeCloseTo(2 ** 48 / 0xffff, 3);
    expect(hashesPerDifficulty('scrypt')).toBeCloseTo(2 ** 32 / 0xffff, 6);
    expect(hashesPerDifficulty('sha256d') / 2 ** 32).toBeCloseTo(1, 4);
    expect(hashesPerDifficulty('scrypt') / 2 ** 16).toBeCloseTo(1, 4);
  });
});

describe('RelayStats with emitted events', () => {
  let clock: number;
  let subject: FakeStratifier;
  let stats: RelayStats;

  beforeEach(() => {
    clock = 1_000;
    subject = new FakeStratifier();
    stats = new RelayStats({ now: () => clock, hashrateWindowSeconds: 300 });
  });

  afterEach(() => stats.detach());

  it('starts from the stratifier state at attach', () => {
    subject.clientCount = 3;
    subject.upstreamState = 'live';
    subject.upstreamTerms = TERMS;
    stats.attach(subject);
    expect(stats.snapshot()).toEqual({
      clients: 3,
      shares: { accepted: 0, acceptedDifficulty: 0, rejected: zeroRejects() },
      forwarded: { accepted: 0, rejected: 0, stale: 0, lastRejectReason: null },
      blocks: { found: 0, accepted: 0, rejected: 0, stale: 0, recent: [] },
      jobs: 0,
      upstream: { state: 'live', since: 1_000, difficulty: 64, extranonce2Size: 8 },
      hashrate: { hps: 0, windowSeconds: 300 },
    });
    expect(() => stats.attach(subject)).toThrow(/already attached/);
  });

  it('counts clients, shares by reason, forwarded, blocks and jobs exactly', () => {
    stats.attach(subject);
    subject.emit('client-open', session);
    subject.emit('client-open', session);
    subject.emit('client-close', session);
    for (const difficulty of [2, 4, 8]) subject.emit('share', { session, difficulty, code: null });
    for (const code of [20, 21, 21, 22, 23, 23, 23, 24, 25, 99]) {
      subject.emit('share', { session, difficulty: 0, code, reason: 'x' });
    }
    subject.emit('forwarded', { session, outcome: { accepted: true } });
    subject.emit('forwarded', { session, outcome: { accepted: false, reason: 'stale job' } });
    subject.emit('forwarded', {
      session,
      outcome: { accepted: false, reason: 'x'.repeat(500), code: 23 },
    });
    subject.emit('block', { session, hash: '00', outcome: { accepted: true } });
    subject.emit('block', { session, hash: '01', outcome: { accepted: false, reason: 'bad' } });
    subject.emit('block', { session, hash: '02', outcome: null });
    subject.emit('job', { jobId: '1', clean: true, clients: 1 });
    subject.emit('job', { jobId: '2', clean: false, clients: 1 });

    const snapshot = stats.snapshot();
    expect(snapshot.clients).toBe(1);
    expect(snapshot.shares).toEqual({
      accepted: 3,
      acceptedDifficulty: 14,
      rejected: {
        other: 2,
        stale: 2,
        duplicate: 1,
        'low-difficulty': 3,
        unauthorized: 1,
        'not-registered': 1,
      },
    });
    // Pool texts are capped: they are shown to operators, not stored without bound.
    expect(snapshot.forwarded).toEqual({
      accepted: 1,
      rejected: 2,
      stale: 1,
      lastRejectReason: 'x'.repeat(200),
    });
    expect(snapshot.blocks).toEqual({
      found: 3,
      accepted: 1,
      rejected: 1,
      stale: 0,
      recent: [
        { at: 1_000, height: null, hash: '02', result: 'unsubmitted', reason: null, count: 1 },
        { at: 1_000, height: null, hash: '01', result: 'rejected', reason: 'bad', count: 1 },
        { at: 1_000, height: null, hash: '00', result: 'accepted', reason: null, count: 1 },
      ],
    });
    expect(snapshot.jobs).toBe(2);
  });

  it('counts stale blocks apart and lists a run of them at one height as one row', () => {
    stats.attach(subject);
    const stale = { accepted: false as const, reason: 'stale block: height 7 is already solved' };
    subject.emit('block', { session, hash: 'a7', height: 7, outcome: { accepted: true } });
    clock = 1_001;
    for (const hash of ['b7', 'c7', 'd7']) {
      subject.emit('block', { session, hash, height: 7, outcome: stale });
      subject.emit('forwarded', { session, outcome: stale });
    }
    clock = 1_002;
    subject.emit('block', { session, hash: 'a8', height: 8, outcome: { accepted: true } });
    subject.emit('block', { session, hash: 'b8', height: 8, outcome: { ...stale, reason: 'x' } });
    subject.emit('block', { session, hash: 'c8', height: 8, outcome: stale });

    const { blocks, forwarded } = stats.snapshot();
    expect(forwarded).toMatchObject({ rejected: 3, stale: 3 });
    expect(blocks).toEqual({
      found: 7,
      accepted: 2,
      rejected: 5,
      stale: 4,
      recent: [
        { at: 1_002, height: 8, hash: 'c8', result: 'stale', reason: stale.reason, count: 1 },
        { at: 1_002, height: 8, hash: 'b8', result: 'rejected', reason: 'x', count: 1 },
        { at: 1_002, height: 8, hash: 'a8', result: 'accepted', reason: null, count: 1 },
        { at: 1_001, height: 7, hash: 'b7', result: 'stale', reason: stale.reason, count: 3 },
        { at: 1_000, height: 7, hash: 'a7', result: 'accepted', reason: null, count: 1 },
      ],
    });
  });

  it('keeps only the newest rows of the blocks-found list, and copies them out', () => {
    stats.attach(subject);
    for (let height = 1; height <= RECENT_BLOCKS + 5; height++) {
      subject.emit('block', { session, hash: `h${height}`, height, outcome: { accepted: true } });
    }
    const { recent } = stats.snapshot().blocks;
    expect(recent.map((b) => b.height)).toEqual(
      Array.from({ length: RECENT_BLOCKS }, (_, i) => RECENT_BLOCKS + 5 - i),
    );
    const [newest] = recent;
    if (newest) newest.count = 99;
    expect(stats.snapshot().blocks.recent[0]?.count).toBe(1);
  });

  it('moves "since" only when the upstream state changes, and keeps the terms', () => {
    stats.attach(subject);
    clock = 1_010;
    subject.emit('upstream', { state: 'connecting', terms: TERMS });
    expect(stats.snapshot().upstream).toEqual({
      state: 'connecting',
      since: 1_000,
      difficulty: 64,
      extranonce2Size: 8,
    });
    clock = 1_020;
    subject.emit('upstream', { state: 'live', terms: TERMS });
    clock = 1_030;
    subject.emit('upstream', { state: 'live', terms: { ...TERMS, difficulty: 128 } });
    expect(stats.snapshot().upstream).toMatchObject({
      state: 'live',
      since: 1_020,
      difficulty: 128,
    });
  });

  it('stops counting after detach and keeps the totals', () => {
    stats.attach(subject);
    subject.emit('share', { session, difficulty: 1, code: null });
    stats.detach();
    subject.emit('share', { session, difficulty: 1, code: null });
    subject.emit('job', { jobId: '1', clean: true, clients: 0 });
    expect(subject.listenerCount('share')).toBe(0);
    expect(stats.snapshot().shares.accepted).toBe(1);
    expect(stats.snapshot().jobs).toBe(0);
  });

  describe('hash rate', () => {
    const H = hashesPerDifficulty('sha256d');

    it('uses the elapsed time while it is shorter than the window', () => {
      stats.attach(subject);
      clock = 1_010;
      subject.emit('share', { session, difficulty: 4, code: null });
      subject.emit('share', { session, difficulty: 6, code: null });
      expect(stats.hashrate()).toBe((10 * H) / 10);
      clock = 1_100;
      expect(stats.hashrate()).toBe((10 * H) / 100);
    });

    it('divides by the window once it is full and forgets shares older than it', () => {
      stats.attach(subject);
      clock = 1_100;
      subject.emit('share', { session, difficulty: 30, code: null });
      clock = 1_350;
      subject.emit('share', { session, difficulty: 60, code: null });
      expect(stats.hashrate()).toBe((90 * H) / 300);
      // The window is (now − 300, now]: the share at 1100 leaves it at 1400.
      clock = 1_399;
      expect(stats.hashrate()).toBe((90 * H) / 300);
      clock = 1_400;
      expect(stats.hashrate()).toBe((60 * H) / 300);
      clock = 1_650;
      expect(stats.hashrate()).toBe(0);
      // The all-time sum is not windowed.
      expect(stats.snapshot().shares.acceptedDifficulty).toBe(90);
    });

    it('counts at least one second so a share at attach time is not infinite', () => {
      stats.attach(subject);
      subject.emit('share', { session, difficulty: 2, code: null });
      expect(stats.hashrate()).toBe(2 * H);
    });

    it('uses the algorithm of the stratifier (scrypt: ≈2^16 hashes per difficulty)', () => {
      stats.attach(new FakeStratifier('scrypt'));
      expect(stats.hashrate()).toBe(0);
      const scrypt = new FakeStratifier('scrypt');
      const other = new RelayStats({ now: () => clock, hashrateWindowSeconds: 60 });
      other.attach(scrypt);
      clock = 1_120;
      scrypt.emit('share', { session, difficulty: 65_536, code: null });
      expect(other.hashrate()).toBe((65_536 * hashesPerDifficulty('scrypt')) / 60);
      expect(other.snapshot().hashrate.windowSeconds).toBe(60);
      other.detach();
    });

    it('rejects a window below one second', () => {
      expect(() => new RelayStats({ hashrateWindowSeconds: 0 })).toThrow(RangeError);
      expect(() => new RelayStats({ hashrateWindowSeconds: Number.NaN })).toThrow(RangeError);
    });
  });
});

/**
 * A real stratifier fed by a ManualSource, shares crafted by searching nonces so every
 * outcome is certain: client and upstream difficulty 2^-28 (1 hash in 16 passes), network
 * target 0xffff << 232 (1 in 256 is a block).
 */
describe('RelayStats on a real stratifier', () => {
  const DIFFICULTY = 2 ** -28;
  const NBITS = '2000ffff';
  /** The jobs' coinbase pushes this height first (BIP34: 02 d204 is 1234). */
  const HEIGHT = 1234;
  const COINB1 = `0100000001${'00'.repeat(32)}ffffffff2002d204`;
  let source: ManualSource;
  let stratifier: Stratifier;
  let stats: RelayStats;
  let hasher: PowHasher;
  let jobs: Job[];
  let nonce: number;

  const clientTarget = difficultyToTarget(DIFFICULTY, 'sha256d');
  const networkTarget = nbitsToTarget(Number.parseInt(NBITS, 16));

  /** A share for the latest job whose hash satisfies `want`; nonces are never reused. */
  async function craft(
    client: ClientSession,
    want: (hash: Uint8Array) => boolean,
  ): Promise<ShareSubmission> {
    const job = jobs.at(-1);
    if (!job) throw new Error('no job sent yet');
    for (let tries = 0; tries < 100_000; tries++) {
      const share = {
        jobId: job.jobId,
        extranonce2: '000000000001',
        ntime: job.ntime,
        nonce: u32ToHex(nonce++),
      };
      const { header } = headerFromJob(job, client.extranonce1, share, client.versionMask);
      if (want(await hasher(header))) return share;
    }
    throw new Error('no share found');
  }
  const passes = (hash: Uint8Array) => hashMeetsTarget(hash, clientTarget);
  const plainShare = (hash: Uint8Array) => passes(hash) && !hashMeetsTarget(hash, networkTarget);
  const blockShare = (hash: Uint8Array) => hashMeetsTarget(hash, networkTarget);
  const lowShare = (hash: Uint8Array) => !passes(hash);

  function register(): ClientSession {
    const channel: ClientChannel = { ...silentChannel, sendJob: (job) => jobs.push(job) };
    const { session: client } = stratifier.register(channel, 'tickets');
    stratifier.sendCurrentWork(client);
    return client;
  }

  async function rejectedWith(promise: Promise<unknown>, code: number): Promise<void> {
    await expect(promise).rejects.toMatchObject({ code });
  }

  /** Forwarding is asynchronous: wait until the source has seen `n` submissions. */
  async function forwardedCount(n: number): Promise<void> {
    await expect
      .poll(() => stats.snapshot().forwarded.accepted + stats.snapshot().forwarded.rejected)
      .toBe(n);
  }

  beforeEach(async () => {
    hasher = await createPowHasher('sha256d');
    jobs = [];
    nonce = 0;
    source = new ManualSource('sha256d');
    stratifier = await startTestStratifier(source, {
      difficulty: DIFFICULTY,
      pinned: true,
      hasher,
    });
    stats = new RelayStats();
    stats.attach(stratifier);
    source.setTerms({ difficulty: DIFFICULTY, versionMask: null });
    source.newJob({ clean: true, nbits: NBITS, coinb1: COINB1 });
    source.setState('live');
  });

  afterEach(() => {
    stats.detach();
    stratifier.stop();
  });

  it('counts each rejection code from crafted shares', async () => {
    const client = register();
    expect(stats.snapshot().clients).toBe(1);
    const job = jobs[0]!;

    const good = await craft(client, plainShare);
    await stratifier.submit(client, good);
    await rejectedWith(stratifier.submit(client, good), RpcErrorCode.duplicateShare);
    await rejectedWith(
      stratifier.submit(client, await craft(client, lowShare)),
      RpcErrorCode.lowDifficulty,
    );
    await rejectedWith(
      stratifier.submit(client, { ...good, jobId: 'nope' }),
      RpcErrorCode.jobNotFound,
    );
    await rejectedWith(
      stratifier.submit(client, { ...good, ntime: u32ToHex(Number.parseInt(job.ntime, 16) - 1) }),
      RpcErrorCode.shareOther,
    );
    source.setState('down');
    await rejectedWith(stratifier.submit(client, good), RpcErrorCode.jobNotFound);
    stratifier.close(client);
    await rejectedWith(stratifier.submit(client, good), RpcErrorCode.notRegistered);

    const snapshot = stats.snapshot();
    expect(snapshot.clients).toBe(0);
    expect(snapshot.shares).toEqual({
      accepted: 1,
      acceptedDifficulty: DIFFICULTY,
      rejected: {
        ...zeroRejects(),
        other: 1,
        stale: 2,
        duplicate: 1,
        'low-difficulty': 1,
        'not-registered': 1,
      },
    });
    expect(snapshot.upstream.state).toBe('down');
    // One clean job on going live; register re-sends it, which is not a new job.
    expect(snapshot.jobs).toBe(1);
    await forwardedCount(1);
  });

  it('counts forwarded answers and blocks from the source', async () => {
    const client = register();
    source.answer = () => ({ accepted: false, reason: 'low difficulty share', code: 23 });
    await stratifier.submit(client, await craft(client, plainShare));
    await forwardedCount(1);
    source.answer = () => ({ accepted: true });
    await stratifier.submit(client, await craft(client, plainShare));
    await stratifier.submit(client, await craft(client, blockShare));
    await forwardedCount(3);
    await expect.poll(() => stats.snapshot().blocks.found).toBe(1);
    source.answer = () => ({ accepted: false, reason: 'bad-txns' });
    await stratifier.submit(client, await craft(client, blockShare));
    await expect.poll(() => stats.snapshot().blocks.found).toBe(2);

    const snapshot = stats.snapshot();
    expect(snapshot.forwarded).toEqual({
      accepted: 2,
      rejected: 2,
      stale: 0,
      lastRejectReason: 'bad-txns',
    });
    expect(snapshot.blocks).toMatchObject({ found: 2, accepted: 1, rejected: 1, stale: 0 });
    // The height comes from the job's coinbase (BIP34), newest block first.
    expect(snapshot.blocks.recent).toEqual([
      expect.objectContaining({ height: HEIGHT, result: 'rejected', reason: 'bad-txns' }),
      expect.objectContaining({ height: HEIGHT, result: 'accepted', reason: null }),
    ]);
    expect(snapshot.shares.accepted).toBe(4);
    expect(source.submitted).toHaveLength(4);
  });
});
