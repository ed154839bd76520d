import type { EventEmitter } from 'node:events';
import type { Algorithm } from '../work/algorithm.js';
import type { Job, ShareSubmission } from '../work/job.js';

/**
 * Where work comes from. Both kinds (a Stratum pool, or a coin node through
 * getblocktemplate) look the same to the rest of the relay: one upstream miner with an
 * extranonce1, an extranonce2 size to split among clients, a difficulty, and jobs.
 */

export type SourceState = 'connecting' | 'live' | 'down';

/**
 * A job tagged with the upstream session that issued it. `session` increases on every new
 * upstream session (reconnect, failover, set_extranonce), so a share for a job of an earlier
 * session can be refused locally instead of forwarded.
 */
export interface SourceJob extends Job {
  session: number;
}

export interface UpstreamTerms {
  session: number;
  /** Hex; clients' extranonce1 is this plus their slot. */
  extranonce1: string;
  extranonce2Size: number;
  /** Share difficulty the upstream asks for (pool difficulty, or network difficulty solo). */
  difficulty: number;
  /** BIP310 mask granted by the upstream (hex8 as number), null when rolling is off. */
  versionMask: number | null;
}

export interface SourceStatus {
  state: SourceState;
  /** Human-readable name of the upstream in use (pool URL without credentials, or node URL). */
  upstream: string | null;
  terms: UpstreamTerms | null;
  job: SourceJob | null;
}

export interface UpstreamShare extends ShareSubmission {
  /** The upstream session of the job; a mismatch means the share is stale and is not sent. */
  session: number;
}

export type SubmitOutcome =
  { accepted: true; block?: string } | { accepted: false; reason: string; code?: number };

export interface WorkSourceEvents {
  job: [SourceJob];
  /** New terms: new session, difficulty, extranonce or version mask. */
  terms: [UpstreamTerms];
  state: [SourceState];
  /** Text the upstream wants an operator to see (client.show_message). */
  message: [string];
}

export interface WorkSource extends EventEmitter<WorkSourceEvents> {
  readonly algorithm: Algorithm;
  start(): void;
  stop(): Promise<void>;
  status(): SourceStatus;
  /** Never throws for a refused share; rejects only on programming errors. */
  submit(share: UpstreamShare): Promise<SubmitOutcome>;
}
