import type { SourceJob, UpstreamShare, UpstreamTerms } from '../sources/work-source.js';
import type { Algorithm } from '../work/algorithm.js';
import { coinbaseAndRoot, type PreparedJob, prepareJob, shareHeader } from '../work/header.js';
import { parseHex, u32ToHex } from '../work/hex.js';
import { difficultyToTarget } from '../work/target.js';

/**
 * The main thread's half of mining: which extranonce2 each lane mines, the 76 header bytes
 * a worker scans for it, and the share a found nonce becomes. Pure: no threads, no clock.
 */

/** A (terms, job) pair parsed once; every task of one generation shares it. */
export interface PlannedWork {
  generation: number;
  algorithm: Algorithm;
  session: number;
  jobId: string;
  ntime: string;
  extranonce2Size: number;
  target: bigint;
  job: PreparedJob;
  extranonce1: Uint8Array;
}

/** Throws HexError/HeaderError/TargetError naming the bad field of the job or terms. */
export function planWork(
  job: SourceJob,
  terms: UpstreamTerms,
  algorithm: Algorithm,
  generation: number,
): PlannedWork {
  if (!Number.isInteger(terms.extranonce2Size) || terms.extranonce2Size < 0) {
    throw new RangeError(`extranonce2Size: expected a byte count, got ${terms.extranonce2Size}`);
  }
  return {
    generation,
    algorithm,
    session: job.session,
    jobId: job.jobId,
    ntime: job.ntime,
    extranonce2Size: terms.extranonce2Size,
    target: difficultyToTarget(terms.difficulty, algorithm),
    job: prepareJob(job),
    extranonce1: parseHex(terms.extranonce1, 'extranonce1'),
  };
}

/**
 * The extranonce2 of a lane's `round`-th task: lane + round × lanes, big-endian hex of
 * `size` bytes, so lanes never mine the same coinbase. It wraps modulo 256^size (a small
 * size and a very long job could revisit a value; at 2^32 nonces per value that takes
 * minutes per value even for sha256d). Null when the space has no value for this lane.
 */
export function extranonce2For(
  lane: number,
  round: number,
  lanes: number,
  size: number,
): string | null {
  const space = 2 ** (8 * size);
  if (lane >= space) return null;
  if (size === 0) return '';
  const value = (lane + round * lanes) % space;
  return value.toString(16).padStart(2 * size, '0');
}

/** Header bytes 0..75 for one extranonce2: coinbase → merkle root → header with nonce 0. */
export function header76For(work: PlannedWork, extranonce2: string): Uint8Array {
  const { merkleRoot } = coinbaseAndRoot(
    work.job,
    work.extranonce1,
    parseHex(extranonce2, 'extranonce2', work.extranonce2Size),
  );
  const header = shareHeader(
    work.job,
    merkleRoot,
    { ntime: work.ntime, nonce: '00000000' },
    work.job.version,
  );
  return header.slice(0, 76);
}

export function shareFor(work: PlannedWork, extranonce2: string, nonce: number): UpstreamShare {
  return {
    session: work.session,
    jobId: work.jobId,
    extranonce2,
    ntime: work.ntime,
    nonce: u32ToHex(nonce),
  };
}
