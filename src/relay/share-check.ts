import type { Algorithm } from '../work/algorithm.js';
import { coinbaseAndRoot, shareHeader, shareVersion } from '../work/header.js';
import { isHex, parseHex } from '../work/hex.js';
import type { ShareSubmission } from '../work/job.js';
import type { PowHasher } from '../work/pow.js';
import { difficultyToTarget, hashMeetsTarget } from '../work/target.js';
import { versionBitsWithinMask } from '../work/version.js';
import { RpcErrorCode } from '../protocol/errors.js';
import { type BookedJob, type JobBook, MAX_CACHED_ROOTS } from './job-book.js';

/** What the share checks need to know about the submitting client. */
export interface ShareClient {
  registered: boolean;
  /** The client's extranonce1: its slot (the upstream extranonce1 is folded into coinb1). */
  extranonce1: string;
  extranonce2Size: number;
  /** Negotiated mask (upstream ∩ client), null when version rolling is off. */
  versionMask: number | null;
  /** The client's difficulty now (for the jobs it is sent next). */
  difficulty: number;
  /** The job behind an id this client was sent, and its difficulty; undefined if never sent. */
  jobSent(jobId: string): SentJob | undefined;
}

/** A job as one client was sent it. */
export interface SentJob {
  /** The job book's id (a retarget re-sends the same work under a new id). */
  bookId: string;
  /** The client's difficulty when the job was sent. */
  difficulty: number;
}

export type ShareVerdict =
  | {
      ok: true;
      job: BookedJob;
      /** The difficulty the share is credited at (the client's for that job, not the hash's). */
      difficulty: number;
      hash: Uint8Array;
      header: Uint8Array;
      meetsUpstream: boolean;
      meetsNetwork: boolean;
    }
  | { ok: false; code: number; message: string };

/** Largest ntime roll accepted past the job's ntime (docs/design.md §4.3). */
export const MAX_NTIME_ROLL_SECONDS = 7000;

function reject(code: number, message: string): ShareVerdict {
  return { ok: false, code, message };
}

function merkleRoot(job: BookedJob, extranonce1: string, extranonce2: string): Uint8Array {
  const key = `${extranonce1}:${extranonce2}`;
  let root = job.roots.get(key);
  if (!root) {
    root = coinbaseAndRoot(
      job.prepared,
      parseHex(extranonce1, 'extranonce1'),
      parseHex(extranonce2, 'extranonce2'),
    ).merkleRoot;
    if (job.roots.size >= MAX_CACHED_ROOTS) job.roots.clear();
    job.roots.set(key, root);
  }
  return root;
}

/**
 * The share checks of docs/design.md §4.3, in that order: registered (25) → job known (21) →
 * extranonce2 size → ntime window → version bits in mask (20) → duplicate (22) → PoW meets
 * the client's difficulty for that job (23). The duplicate key is recorded before the
 * asynchronous PoW check so two identical shares racing each other cannot both pass.
 *
 * A share is judged at the difficulty its job was sent with. When the client's difficulty
 * has since gone down, a share meeting the lower one is accepted too, credited at it: some
 * miners apply a new difficulty to the work they already have, and they are honest too.
 */
export async function checkShare(
  client: ShareClient,
  share: ShareSubmission,
  book: JobBook,
  algorithm: Algorithm,
  hasher: PowHasher,
): Promise<ShareVerdict> {
  if (!client.registered) return reject(RpcErrorCode.notRegistered, 'not registered');
  const sent = client.jobSent(share.jobId);
  const job = sent ? book.get(sent.bookId) : undefined;
  if (!sent || !job) return reject(RpcErrorCode.jobNotFound, 'job not found (stale)');
  if (!isHex(share.extranonce2, client.extranonce2Size)) {
    return reject(
      RpcErrorCode.shareOther,
      `extranonce2 must be ${client.extranonce2Size} bytes of hex`,
    );
  }
  const ntime = Number.parseInt(share.ntime, 16);
  if (!isHex(share.ntime, 4) || ntime < job.ntime || ntime > job.ntime + MAX_NTIME_ROLL_SECONDS) {
    return reject(RpcErrorCode.shareOther, 'ntime out of range');
  }
  if (share.versionBits !== undefined) {
    const bits = Number.parseInt(share.versionBits, 16) >>> 0;
    if (!isHex(share.versionBits, 4) || !versionBitsWithinMask(bits, client.versionMask ?? 0)) {
      return reject(RpcErrorCode.shareOther, 'version bits outside the negotiated mask');
    }
  }
  if (!isHex(share.nonce, 4)) return reject(RpcErrorCode.shareOther, 'nonce must be hex8');
  const key = [
    client.extranonce1,
    share.extranonce2.toLowerCase(),
    share.ntime.toLowerCase(),
    share.nonce.toLowerCase(),
    (share.versionBits ?? '').toLowerCase(),
  ].join(':');
  if (job.seen.has(key)) return reject(RpcErrorCode.duplicateShare, 'duplicate share');
  job.seen.add(key);

  const header = shareHeader(
    job.prepared,
    merkleRoot(job, client.extranonce1, share.extranonce2.toLowerCase()),
    share,
    shareVersion(job.prepared, share.versionBits, client.versionMask),
  );
  let hash: Uint8Array;
  try {
    hash = await hasher(header);
  } catch (err) {
    // Not judged (e.g. 38, the check queue was full): the miner may send it again.
    job.seen.delete(key);
    throw err;
  }
  const difficulty = creditedDifficulty(hash, sent.difficulty, client.difficulty, algorithm);
  if (difficulty === null) return reject(RpcErrorCode.lowDifficulty, 'low difficulty share');
  return {
    ok: true,
    job,
    difficulty,
    hash,
    header,
    meetsUpstream: hashMeetsTarget(hash, difficultyToTarget(job.upstreamDifficulty, algorithm)),
    meetsNetwork: hashMeetsTarget(hash, job.networkTarget),
  };
}

/** The job's difficulty if the hash meets it, else the client's lower current one if met. */
function creditedDifficulty(
  hash: Uint8Array,
  sent: number,
  current: number,
  algorithm: Algorithm,
): number | null {
  if (hashMeetsTarget(hash, difficultyToTarget(sent, algorithm))) return sent;
  if (current < sent && hashMeetsTarget(hash, difficultyToTarget(current, algorithm))) {
    return current;
  }
  return null;
}
