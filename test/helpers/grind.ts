import type { JobParams } from '../../src/protocol/messages.js';
import type { Algorithm } from '../../src/work/algorithm.js';
import { headerFromJob } from '../../src/work/header.js';
import { u32ToHex } from '../../src/work/hex.js';
import { createPowHasher } from '../../src/work/pow.js';
import { difficultyToTarget, hashMeetsTarget } from '../../src/work/target.js';

export interface GroundShare {
  jobId: string;
  extranonce2: string;
  ntime: string;
  nonce: string;
  hash: Uint8Array;
}

/**
 * Search nonces for a share meeting `difficulty` (one hash at a time; for tests only — the
 * miner has its own kernels). Skips `skip` qualifying nonces so successive calls find
 * different shares.
 */
export async function grindShare(
  algorithm: Algorithm,
  job: JobParams,
  extranonce1: string,
  extranonce2Size: number,
  difficulty: number,
  options: { extranonce2?: number; startNonce?: number; maxHashes?: number } = {},
): Promise<GroundShare> {
  const hasher = await createPowHasher(algorithm);
  const target = difficultyToTarget(difficulty, algorithm);
  const extranonce2 = (options.extranonce2 ?? 1).toString(16).padStart(extranonce2Size * 2, '0');
  const max = options.maxHashes ?? 10_000;
  for (let i = 0; i < max; i++) {
    const nonce = u32ToHex((options.startNonce ?? 0) + i);
    const share = { jobId: job.jobId, extranonce2, ntime: job.ntime, nonce };
    const { header } = headerFromJob(job, extranonce1, share, null);
    const hash = await hasher(header);
    if (hashMeetsTarget(hash, target)) return { ...share, hash };
  }
  throw new Error(`no share at difficulty ${difficulty} within ${max} hashes`);
}
