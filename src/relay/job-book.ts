import { randomBytes } from 'node:crypto';
import type { SourceJob } from '../sources/work-source.js';
import { type PreparedJob, prepareJob } from '../work/header.js';
import { parseU32Hex } from '../work/hex.js';
import type { Job } from '../work/job.js';
import { nbitsToTarget } from '../work/target.js';

/**
 * Jobs clients may still submit against: every job since the last clean one (docs/design.md §4.3),
 * each under a relay-assigned id so upstream ids never collide across upstream sessions.
 * Ids are a random per-process prefix and a counter, so they never repeat across upstream
 * sessions or relay restarts either: a miner's work for a job of an old connection or an
 * earlier process is stale (21), never judged against another job (23).
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

/** What a client session needs of the book to announce jobs. */
export interface JobIds {
  /** The job is still in the book (not cleared, not dropped). */
  has(id: string): boolean;
  /** A fresh job id, never given before by this book. */
  nextId(): string;
}

export class JobBook implements JobIds {
  private readonly jobs = new Map<string, BookedJob>();
  private counter = 0;
  private latest: BookedJob | null = null;

  /**
   * `maxJobs` bounds memory when an upstream never sends a clean job. `idPrefix`: random by
   * default (4 bytes: two relay processes share one with odds of 1 in 2^32).
   */
  constructor(
    private readonly maxJobs = 64,
    private readonly idPrefix = randomBytes(4).toString('hex'),
  ) {}

  nextId(): string {
    this.counter += 1;
    return `${this.idPrefix}${this.counter.toString(16)}`;
  }

  /** Book a job. Throws (HexError/HeaderError naming the field) on a malformed job. */
  add(source: SourceJob, terms: JobTerms): BookedJob {
    const clientJob = { ...source, jobId: '', coinb1: source.coinb1 + terms.extranonce1 };
    const prepared = prepareJob(clientJob);
    if (source.clean) this.jobs.clear();
    const id = this.nextId();
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

  has(id: string): boolean {
    return this.jobs.has(id);
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
