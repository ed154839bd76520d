import { beforeAll, describe, expect, it } from 'vitest';
import { RpcErrorCode } from '../../src/protocol/errors.js';
import { JobBook } from '../../src/relay/job-book.js';
import { checkShare, type ShareClient } from '../../src/relay/share-check.js';
import type { SourceJob } from '../../src/sources/work-source.js';
import { headerFromJob } from '../../src/work/header.js';
import { createPowHasher, type PowHasher } from '../../src/work/pow.js';
import { hashDifficulty, MIN_DIFFICULTY } from '../../src/work/target.js';
import { BIP320_MASK } from '../../src/work/version.js';

const sourceJob: SourceJob = {
  session: 1,
  jobId: 'upstream-7',
  prevhash: '11'.repeat(32),
  coinb1: '01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20',
  coinb2: 'ffffffff0100f2052a010000001976a914000000000000000000000000000000000000000088ac00000000',
  merkleBranch: ['22'.repeat(32)],
  version: '20000000',
  nbits: '1d00ffff',
  ntime: '60000000',
  clean: true,
};

let hasher: PowHasher;
beforeAll(async () => {
  hasher = await createPowHasher('sha256d');
});

/** `clientDifficulty`: the job was sent at it; `currentDifficulty`: the client's now. */
function setup(clientDifficulty: number, upstreamDifficulty = 1, currentDifficulty?: number) {
  const book = new JobBook();
  const job = book.add(sourceJob, { difficulty: upstreamDifficulty, extranonce1: 'aabbccdd' });
  const client: ShareClient = {
    registered: true,
    extranonce1: '0001',
    extranonce2Size: 4,
    versionMask: BIP320_MASK,
    difficulty: currentDifficulty ?? clientDifficulty,
    jobSent: (id) => (id === job.id ? { bookId: job.id, difficulty: clientDifficulty } : undefined),
  };
  const share = { jobId: job.id, extranonce2: '00000001', ntime: '60000010', nonce: '00000000' };
  return { book, job, client, share };
}

describe('checkShare: docs/design.md §4.3 checks in order', () => {
  it('accepts a share meeting the client difficulty and reports upstream/network', async () => {
    const { book, client, share } = setup(MIN_DIFFICULTY, 1e12);
    const verdict = await checkShare(client, share, book, 'sha256d', hasher);
    expect(verdict.ok).toBe(true);
    if (!verdict.ok) return;
    expect(verdict.difficulty).toBe(MIN_DIFFICULTY);
    expect(verdict.meetsUpstream).toBe(false);
    expect(verdict.meetsNetwork).toBe(false);
    // The verdict's hash is the hash of the header the share describes.
    const { header } = headerFromJob(verdict.job.clientJob, client.extranonce1, share, BIP320_MASK);
    expect(Buffer.from(await hasher(header))).toEqual(Buffer.from(verdict.hash));
  });

  it('25 when the client has not registered', async () => {
    const { book, client, share } = setup(MIN_DIFFICULTY);
    const verdict = await checkShare(
      { ...client, registered: false },
      share,
      book,
      'sha256d',
      hasher,
    );
    expect(verdict).toMatchObject({ ok: false, code: RpcErrorCode.notRegistered });
  });

  it('21 for an unknown job, a cleared job, and a job never sent to this client', async () => {
    const { book, client, share } = setup(MIN_DIFFICULTY);
    expect(
      await checkShare(client, { ...share, jobId: 'nope' }, book, 'sha256d', hasher),
    ).toMatchObject({
      code: RpcErrorCode.jobNotFound,
    });
    const unsent = { ...client, jobSent: () => undefined };
    expect(await checkShare(unsent, share, book, 'sha256d', hasher)).toMatchObject({
      code: RpcErrorCode.jobNotFound,
    });
    book.add(
      { ...sourceJob, jobId: 'next', clean: true },
      { difficulty: 1, extranonce1: 'aabbccdd' },
    );
    expect(await checkShare(client, share, book, 'sha256d', hasher)).toMatchObject({
      code: RpcErrorCode.jobNotFound,
    });
  });

  it('a non-clean job keeps earlier jobs valid', async () => {
    const { book, client, share } = setup(MIN_DIFFICULTY);
    book.add(
      { ...sourceJob, jobId: 'next', clean: false },
      { difficulty: 1, extranonce1: 'aabbccdd' },
    );
    expect((await checkShare(client, share, book, 'sha256d', hasher)).ok).toBe(true);
  });

  it('20 for a wrong extranonce2 size', async () => {
    const { book, client, share } = setup(MIN_DIFFICULTY);
    for (const extranonce2 of ['000001', '0000000001', 'zzzzzzzz']) {
      expect(
        await checkShare(client, { ...share, extranonce2 }, book, 'sha256d', hasher),
      ).toMatchObject({ code: RpcErrorCode.shareOther, message: /extranonce2/ });
    }
  });

  it('20 for ntime before the job or more than 7000 s after it', async () => {
    const { book, client, share } = setup(MIN_DIFFICULTY);
    const at = (ntime: string) => checkShare(client, { ...share, ntime }, book, 'sha256d', hasher);
    expect(await at('5fffffff')).toMatchObject({ code: 20, message: /ntime/ });
    expect(await at((0x60000000 + 7001).toString(16))).toMatchObject({ code: 20 });
    expect((await at((0x60000000 + 7000).toString(16))).ok).toBe(true);
  });

  it('20 for version bits outside the mask; inside is accepted', async () => {
    const { book, client, share } = setup(MIN_DIFFICULTY);
    expect(
      await checkShare(client, { ...share, versionBits: '00001000' }, book, 'sha256d', hasher),
    ).toMatchObject({ code: 20, message: /version bits/ });
    expect(
      (await checkShare(client, { ...share, versionBits: '00ffe000' }, book, 'sha256d', hasher)).ok,
    ).toBe(true);
    const noMask = { ...client, versionMask: null };
    expect(
      await checkShare(
        noMask,
        { ...share, nonce: '00000002', versionBits: '00002000' },
        book,
        'sha256d',
        hasher,
      ),
    ).toMatchObject({ code: 20 });
  });

  it('22 for a duplicate; version bits are part of the key', async () => {
    const { book, client, share } = setup(MIN_DIFFICULTY);
    expect((await checkShare(client, share, book, 'sha256d', hasher)).ok).toBe(true);
    expect(await checkShare(client, share, book, 'sha256d', hasher)).toMatchObject({ code: 22 });
    // Same share in upper-case hex is still the same share.
    expect(
      await checkShare(
        client,
        { ...share, extranonce2: '00000001'.toUpperCase() },
        book,
        'sha256d',
        hasher,
      ),
    ).toMatchObject({ code: 22 });
    expect(
      (await checkShare(client, { ...share, versionBits: '00002000' }, book, 'sha256d', hasher)).ok,
    ).toBe(true);
  });

  it('22 for two identical shares racing each other: only one is accepted', async () => {
    const { book, client, share } = setup(MIN_DIFFICULTY);
    const verdicts = await Promise.all(
      Array.from({ length: 10 }, () => checkShare(client, share, book, 'sha256d', hasher)),
    );
    expect(verdicts.filter((v) => v.ok)).toHaveLength(1);
    expect(verdicts.filter((v) => !v.ok && v.code === 22)).toHaveLength(9);
  });

  it('23 when the hash misses the difficulty that was in force when the job was sent', async () => {
    const { book, client, share, job } = setup(1e9);
    // Find a nonce whose hash achieves a difficulty comfortably above the floor.
    let nonce = 0;
    let achieved = 0;
    for (; achieved < 8 * MIN_DIFFICULTY; nonce++) {
      const candidate = { ...share, nonce: nonce.toString(16).padStart(8, '0') };
      const { header } = headerFromJob(job.clientJob, client.extranonce1, candidate, BIP320_MASK);
      achieved = hashDifficulty(await hasher(header), 'sha256d');
    }
    const found = { ...share, nonce: (nonce - 1).toString(16).padStart(8, '0') };
    expect(await checkShare(client, found, book, 'sha256d', hasher)).toMatchObject({
      code: RpcErrorCode.lowDifficulty,
    });
    // Just above what it achieved: 23; just below: accepted. (Each setup is a new book, so
    // the share names that book's id for the same job.)
    const above = setup(achieved * 1.01);
    expect(
      await checkShare(
        above.client,
        { ...found, jobId: above.job.id },
        above.book,
        'sha256d',
        hasher,
      ),
    ).toMatchObject({
      code: RpcErrorCode.lowDifficulty,
    });
    const below = setup(achieved * 0.99);
    expect(
      (
        await checkShare(
          below.client,
          { ...found, jobId: below.job.id },
          below.book,
          'sha256d',
          hasher,
        )
      ).ok,
    ).toBe(true);

    // Sent at the lower difficulty, the client's is higher now (a retarget up): the job's
    // difficulty judges, and the share is credited at it.
    const raised = setup(achieved * 0.99, 1, 1e9);
    expect(
      await checkShare(
        raised.client,
        { ...found, jobId: raised.job.id },
        raised.book,
        'sha256d',
        hasher,
      ),
    ).toMatchObject({
      ok: true,
      difficulty: achieved * 0.99,
    });
    // Sent above what it achieved, but the client's difficulty went down since (a miner that
    // applies the new difficulty to the work it has): accepted, credited at the lower one.
    const lowered = setup(achieved * 1.01, 1, achieved * 0.99);
    expect(
      await checkShare(
        lowered.client,
        { ...found, jobId: lowered.job.id },
        lowered.book,
        'sha256d',
        hasher,
      ),
    ).toMatchObject({
      ok: true,
      difficulty: achieved * 0.99,
    });
    const stillLow = setup(achieved * 1.01, 1, achieved * 1.005);
    expect(
      await checkShare(
        stillLow.client,
        { ...found, jobId: stillLow.job.id },
        stillLow.book,
        'sha256d',
        hasher,
      ),
    ).toMatchObject({ code: RpcErrorCode.lowDifficulty });
  });

  it('a job re-sent under a new id is the same job: one duplicate key for both ids', async () => {
    const { book, client, share, job } = setup(MIN_DIFFICULTY);
    const alias = book.nextId();
    const resent: ShareClient = {
      ...client,
      jobSent: (id) =>
        id === job.id || id === alias ? { bookId: job.id, difficulty: MIN_DIFFICULTY } : undefined,
    };
    expect(
      await checkShare(resent, { ...share, jobId: alias }, book, 'sha256d', hasher),
    ).toMatchObject({ ok: true, job: { id: job.id } });
    expect(await checkShare(resent, share, book, 'sha256d', hasher)).toMatchObject({
      code: RpcErrorCode.duplicateShare,
    });
    // The id alone means nothing: a client never sent it gets 21.
    expect(
      await checkShare(
        client,
        { ...share, jobId: alias, nonce: '00000009' },
        book,
        'sha256d',
        hasher,
      ),
    ).toMatchObject({ code: RpcErrorCode.jobNotFound });
  });
});

describe('JobBook', () => {
  const terms = { difficulty: 1, extranonce1: 'aabbccdd' };

  it('folds the upstream extranonce1 into coinb1: same coinbase as upstream sees', () => {
    const book = new JobBook();
    const job = book.add(sourceJob, terms);
    const share = { jobId: job.id, extranonce2: '00000001', ntime: '60000010', nonce: '00000000' };
    const client = headerFromJob(job.clientJob, '0001', share, null);
    const upstream = headerFromJob(
      sourceJob,
      'aabbccdd',
      { ...share, jobId: sourceJob.jobId, extranonce2: '000100000001' },
      null,
    );
    expect(Buffer.from(client.header)).toEqual(Buffer.from(upstream.header));
    expect(job.clientJob.jobId).toBe(job.id);
    expect(job.clientJob.coinb1).toBe(`${sourceJob.coinb1}aabbccdd`);
  });

  it('relay ids never repeat across upstream sessions with equal upstream ids', () => {
    const book = new JobBook();
    const a = book.add(sourceJob, terms);
    const b = book.add({ ...sourceJob, session: 2 }, terms);
    expect(a.id).not.toBe(b.id);
    expect(book.get(a.id)).toBeUndefined();
    expect(book.get(b.id)?.source.session).toBe(2);
  });

  it('ids never repeat: not from nextId, not across books (relay restarts)', () => {
    const book = new JobBook(64, 'feedbeef');
    const ids = [book.add(sourceJob, terms).id, book.nextId(), book.add(sourceJob, terms).id];
    expect(ids).toEqual(['feedbeef1', 'feedbeef2', 'feedbeef3']);
    // Another process: its own random prefix, so the same counter gives other ids.
    const restarted = [new JobBook(), new JobBook()].map((b) => b.add(sourceJob, terms).id);
    expect(restarted[0]).toMatch(/^[0-9a-f]{8}1$/);
    expect(restarted[0]).not.toBe(restarted[1]);
  });

  it('keeps non-clean jobs up to its bound, dropping the oldest', () => {
    const book = new JobBook(3);
    const ids = [book.add(sourceJob, terms).id];
    for (let i = 0; i < 4; i++) ids.push(book.add({ ...sourceJob, clean: false }, terms).id);
    expect(book.size).toBe(3);
    expect(ids.map((id) => book.get(id) !== undefined)).toEqual([false, false, true, true, true]);
    book.clear();
    expect(book.size).toBe(0);
    expect(book.current).toBeNull();
  });
});
