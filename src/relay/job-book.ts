import type { SourceJob } from '../sources/work-source.js';
import { type PreparedJob, prepareJob } from '../work/header.js';
import { parseU32Hex } from '../work/hex.js';
import type { Job } from '../work/job.js';
import { nbitsToTarget } from '../work/target.js';

/**
 * Jobs clients may still submit against: every job since the last clean one (docs/design.md §4.3),
 * each under a relay-assigned id so upstream ids never collide across upstream sessions.
 *
 * Clients see coinb1 with the upstream extranonce1 folded in, so a client's extranonce1 is
 * only its slot: reconnects, failover and set_extranonce of the same size change the jobs,
 * never what a client was told at registration.
 */

/** The upstream terms a job is mined under. */
export interface JobTerms {
  difficulty: number;
  extranonce1: string;
}

export interface BookedJob {
  /** Relay job id, what clients see. */
  id: string;
  source: SourceJob;
  /** The job as sent to clients: relay id, coinb1 ‖ upstream extranonce1. */
  clientJob: Job;
  /** Upstream share difficulty in force for this job. */
  upstreamDifficulty: number;
  networkTarget: bigint;
  ntime: number;
  /** The client job's fields parsed once. */
  prepared: PreparedJob;
  /**
   * Merkle roots by `extranonce1:extranonce2`. A miner scans many nonces under one
   * extranonce2, so most shares skip the coinbase hash and the branch fold. Bounded.
   */
  roots: Map<string, Uint8Array>;
  /** Duplicate keys of shares seen for this job; freed with the job. */
  seen: Set<string>;
}

/** Merkle roots cached per job before the cache starts over. */
export const MAX_CACHED_ROOTS = 4096;

export class JobBook {
  private readonly jobs = new Map<string, BookedJob>();
  private counter = 0;
  private latest: BookedJob | null = null;

  /** `maxJobs` bounds memory when an upstream never sends a clean job. */
  constructor(private readonly maxJobs = 64) {}

  /** Book a job. Throws (HexError/HeaderError naming the field) on a malformed job. */
  add(source: SourceJob, terms: JobTerms): BookedJob {
    const clientJob = { ...source, jobId: '', coinb1: source.coinb1 + terms.extranonce1 };
    const prepared = prepareJob(clientJob);
    if (source.clean) this.jobs.clear();
    this.counter = (this.counter + 1) % 2 ** 32;
    const id = this.counter.toString(16);
    clientJob.jobId = id;
    const booked: BookedJob = {
      id,
      source,
      clientJob,
      prepared,
      roots: new Map(),
      upstreamDifficulty: terms.difficulty,
      networkTarget: nbitsToTarget(parseU32Hex(source.nbits, 'nbits')),
      ntime: parseU32Hex(source.ntime, 'ntime'),
      seen: new Set(),
    };
    // Drop the oldest beyond the bound; Map keeps insertion order.
    while (this.jobs.size >= this.maxJobs) {
      const oldest = this.jobs.keys().next().value as string;
      this.jobs.delete(oldest);
    }
    this.jobs.set(id, booked);
    this.latest = booked;
    return booked;
  }

  get(id: string): BookedJob | undefined {
    return this.jobs.get(id);
  }

  get current(): BookedJob | null {
    return this.latest;
  }

  get size(): number {
    return this.jobs.size;
  }

  /** Upstream session ended: no job of it may be mined or forwarded any more. */
  clear(): void {
    this.jobs.clear();
    this.latest = null;
  }
}
