import type { Job } from '../work/job.js';
import type { BookedJob, JobIds } from './job-book.js';
import type { SentJob, ShareClient } from './share-check.js';
import type { Vardiff } from './vardiff.js';

export type ClientMode = 'tickets' | 'donate';

/** Where a client came in: a circuit (HTTP port) or a standard miner (Stratum port). */
export type ClientPort = 'circuit' | 'stratum';

/** How the stratifier reaches one client; a connector implements it for its transport. */
export interface ClientChannel {
  sendJob(job: Job): void;
  sendDifficulty(difficulty: number): void;
  sendExtranonce(extranonce1: string, extranonce2Size: number): void;
  sendVersionMask(mask: number | null): void;
  sendUpstreamState(live: boolean, message: string): void;
  /** The stratifier gives up on this client (e.g. no extranonce slot left after a resize). */
  close(reason: string): void;
}

/**
 * Job ids one client may hold at once. Retargets add ids (one per re-send) on top of the
 * book's jobs; past this the oldest go first, so a client that makes the relay retarget
 * over and over cannot make it remember without bound.
 */
export const MAX_CLIENT_JOBS = 256;

/**
 * One client as the stratifier sees it: its slot, difficulty, the difficulty each job was
 * sent at, and its credit. No network identity is kept here.
 */
export class ClientSession implements ShareClient {
  registered = false;
  /** Each port has its own share of the relay's places (`limits.maxStratumClients`). */
  port: ClientPort = 'circuit';
  extranonce1 = '';
  extranonce2Size = 0;
  versionMask: number | null = null;
  /** Mask the client asked for (Stratum mining.configure); circuit clients take the relay's. */
  versionMaskRequest = 0xffffffff;
  slot: number | null = null;
  /** Credit earned (share difficulty / ticket difficulty), spent by the ticket issuer. */
  credit = 0;
  accepted = 0;
  rejected = 0;
  /** Job id as this client was sent it → the book's job and the difficulty it was sent at. */
  private readonly jobs = new Map<string, SentJob>();
  /**
   * Book id → the difficulty it was announced with under its own id. Outlives forgetJobs:
   * an id is never announced again with another difficulty (Stratum miners tie the
   * difficulty to the notify that follows it, docs/design.md §4.3).
   */
  private readonly announced = new Map<string, number>();

  constructor(
    readonly id: number,
    readonly mode: ClientMode,
    readonly channel: ClientChannel,
    readonly vardiff: Vardiff,
  ) {}

  get difficulty(): number {
    return this.vardiff.difficulty;
  }

  jobSent(jobId: string): SentJob | undefined {
    return this.jobs.get(jobId);
  }

  /**
   * Send a booked job at the current difficulty and remember it. It goes under the book's
   * id unless this client already holds that id, or was sent it at another difficulty: then
   * under a fresh id (after a retarget the same work comes back as a new job).
   */
  sendJob(booked: BookedJob, clean: boolean, ids: JobIds): void {
    this.forgetGone(ids);
    const difficulty = this.vardiff.difficulty;
    const before = this.announced.get(booked.id);
    const reuse = before === undefined || (before === difficulty && !this.jobs.has(booked.id));
    const id = reuse ? booked.id : ids.nextId();
    if (reuse) this.announced.set(booked.id, difficulty);
    // Map order is insertion order: the first key is the oldest.
    for (const oldest of this.jobs.keys()) {
      if (this.jobs.size < MAX_CLIENT_JOBS) break;
      this.jobs.delete(oldest);
    }
    this.jobs.set(id, { bookId: booked.id, difficulty });
    // The book's own object when nothing differs: connectors encode a job once for everyone.
    const job = booked.clientJob;
    this.channel.sendJob(
      id === job.jobId && clean === job.clean ? job : { ...job, jobId: id, clean },
    );
  }

  /** New extranonce or upstream session: none of the jobs sent so far may be mined. */
  forgetJobs(): void {
    this.jobs.clear();
  }

  /** Drop what the book no longer holds (cleared by a clean job, or beyond its bound). */
  private forgetGone(ids: JobIds): void {
    for (const [id, sent] of this.jobs) if (!ids.has(sent.bookId)) this.jobs.delete(id);
    for (const id of this.announced.keys()) if (!ids.has(id)) this.announced.delete(id);
  }
}
