import type { Job } from '../work/job.js';
import type { ShareClient } from './share-check.js';
import type { Vardiff } from './vardiff.js';

export type ClientMode = 'tickets' | 'donate';

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
 * One client as the stratifier sees it: its slot, difficulty, the difficulty each job was
 * sent at, and its credit. No network identity is kept here.
 */
export class ClientSession implements ShareClient {
  registered = false;
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
  /** Relay job id -> difficulty in force when the job was sent to this client. */
  private readonly jobDifficulty = new Map<string, number>();

  constructor(
    readonly id: number,
    readonly mode: ClientMode,
    readonly channel: ClientChannel,
    readonly vardiff: Vardiff,
  ) {}

  get difficulty(): number {
    return this.vardiff.difficulty;
  }

  difficultyForJob(jobId: string): number | undefined {
    return this.jobDifficulty.get(jobId);
  }

  /** Record and send a job; `keep` lists the relay ids still valid so old entries go. */
  sendJob(job: Job, keep: (jobId: string) => boolean): void {
    for (const id of this.jobDifficulty.keys()) if (!keep(id)) this.jobDifficulty.delete(id);
    this.jobDifficulty.set(job.jobId, this.vardiff.difficulty);
    this.channel.sendJob(job);
  }

  forgetJobs(): void {
    this.jobDifficulty.clear();
  }
}
