import { EventEmitter } from 'node:events';
import { type Logger, silentLogger } from '../log.js';
import type {
  SourceJob,
  SourceState,
  UpstreamShare,
  UpstreamTerms,
  WorkSource,
} from '../sources/work-source.js';
import type { Algorithm } from '../work/algorithm.js';
import {
  type ControlViews,
  controlViews,
  createControl,
  laneHashes,
  nextGeneration,
  writeDuty,
} from './miner-control.js';
import { DutyDrift } from './miner-duty.js';
import { JobTracker } from './miner-jobs.js';
import { createMinePool, type MinePool } from './miner-pool.js';
import { ShareQueue } from './miner-share-queue.js';
import { HashrateMeter, type MinerStats, type ShareResult } from './miner-stats.js';
import { extranonce2For, header76For, type PlannedWork, planWork, shareFor } from './miner-work.js';

/** How long a stop waits for found shares to be submitted before dropping the rest. */
const STOP_SUBMIT_MS = 5_000;

export type { MinerStats, ShareResult, ThreadStats } from './miner-stats.js';

/**
 * The client miner: mines the jobs of any WorkSource (the relay circuit, or a pool) on a
 * pool of worker threads and submits what they find through the source.
 *
 * Each thread runs one lane: lane i mines extranonce2 i, i + threads, i + 2·threads, ... one
 * whole nonce range per task, so threads never overlap. The main thread builds each task's
 * 76 header bytes and turns found nonces into shares. Any new job or new terms starts a new
 * generation in shared memory; every task of the old one returns within one kernel call
 * (milliseconds) and the lanes restart on the new work. While the source is not live (the
 * relay lost its upstream, or the circuit is down) the lanes wait: nothing is hashed or sent.
 */

export interface MinerOptions {
  source: WorkSource;
  /** Default: the source's algorithm, read once it has terms. */
  algorithm?: Algorithm;
  threads: number;
  /** Duty cycle, percent of each thread's time spent hashing (default 100). */
  cpuPercent?: number;
  /** Random drift of the duty cycle, percent of it (default 20; 0 = steady). */
  jitterPercent?: number;
  /** Uniform in [0, 1) for the drift (default Math.random). */
  random?: () => number;
  logger?: Logger;
  /** Sliding window of the hash rate (default 10 s). */
  hashrateWindowMs?: number;
  /** How often the hash rate is sampled and the `hashrate` event fires (default 1 s). */
  sampleMs?: number;
}

export interface MinerEvents {
  /** A nonce met the share target; its result follows as `share`. */
  found: [UpstreamShare];
  /** A found share's fate: accepted, rejected (with the reason) or stale. */
  share: [ShareResult];
  /** Hashes per second over the sliding window. */
  hashrate: [number];
}

interface Lane {
  round: number;
  jobId: string | null;
  extranonce2: string | null;
}

/** A failed task (e.g. the worker file is missing) is retried after this pause. */
const RETRY_MS = 1_000;

export class Miner extends EventEmitter<MinerEvents> {
  private readonly source: WorkSource;
  private readonly threadCount: number;
  private readonly control: SharedArrayBuffer;
  private readonly views: ControlViews;
  private readonly duty: DutyDrift;
  private readonly meter: HashrateMeter;
  private readonly queue: ShareQueue;
  private readonly lanes: Lane[];
  private readonly log: Logger;
  private pool: MinePool | null = null;
  private running = false;
  private stopping: Promise<void> | null = null;
  private laneLoops: Promise<void>[] = [];
  private wakeLanes: (() => void)[] = [];
  private driftTimer: NodeJS.Timeout | undefined;
  private sampleTimer: NodeJS.Timeout | undefined;
  private readonly jobs = new JobTracker();
  /** Mine only while the source is live: what it hands out otherwise would be refused. */
  private sourceLive = false;
  private work: PlannedWork | null = null;
  private readonly counts = { found: 0, accepted: 0, rejected: 0, stale: 0 };
  private hashrate = 0;
  private dutyPercent: number;

  constructor(private readonly options: MinerOptions) {
    super();
    const { threads } = options;
    if (!Number.isInteger(threads) || threads < 1) {
      throw new RangeError(`threads: expected a positive integer, got ${threads}`);
    }
    this.source = options.source;
    this.threadCount = threads;
    this.control = createControl(threads);
    this.views = controlViews(this.control);
    this.duty = new DutyDrift({
      cpuPercent: options.cpuPercent ?? 100,
      jitterPercent: options.jitterPercent ?? 20,
      random: options.random ?? Math.random,
    });
    this.dutyPercent = options.cpuPercent ?? 100;
    this.meter = new HashrateMeter(options.hashrateWindowMs ?? 10_000);
    this.queue = new ShareQueue(
      (share) => this.source.submit(share),
      (share) => this.jobs.isLive(share),
      (result) => this.onResult(result),
    );
    this.lanes = Array.from({ length: threads }, () => ({
      round: 0,
      jobId: null,
      extranonce2: null,
    }));
    this.log = options.logger ?? silentLogger;
  }

  /** Live worker threads (0 before start and after stop). */
  get workerThreads(): number {
    return this.pool?.threads ?? 0;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.stopping = null;
    const pool = createMinePool(this.threadCount);
    this.pool = pool;
    this.source.on('terms', this.onTerms);
    this.source.on('job', this.onJob);
    this.source.on('state', this.onState);
    const { state, terms, job } = this.source.status();
    this.sourceLive = state === 'live';
    if (terms) this.onTerms(terms);
    if (job) this.onJob(job);
    this.startTimers();
    this.laneLoops = this.lanes.map((_, lane) => this.runLane(lane, pool));
  }

  /**
   * Stop mining and end the threads, then let the shares found before the stop be submitted
   * (they are the user's credit), for up to STOP_SUBMIT_MS: a stop must end even when
   * hundreds of shares wait behind a slow circuit.
   */
  stop(): Promise<void> {
    if (this.running) this.stopping = this.teardown();
    return this.stopping ?? this.queue.idle();
  }

  stats(): MinerStats {
    const threads = this.lanes.map((lane, i) => ({
      hashes: laneHashes(this.views, i),
      jobId: lane.jobId,
      extranonce2: lane.extranonce2,
    }));
    return {
      hashes: threads.reduce((sum, t) => sum + t.hashes, 0),
      paused: this.running && !this.sourceLive,
      threads,
      hashrate: this.hashrate,
      dutyPercent: this.dutyPercent,
      ...this.counts,
    };
  }

  private async teardown(): Promise<void> {
    this.running = false;
    this.source.off('terms', this.onTerms);
    this.source.off('job', this.onJob);
    this.source.off('state', this.onState);
    clearTimeout(this.driftTimer);
    clearInterval(this.sampleTimer);
    this.hashrate = 0;
    this.replan();
    await Promise.all(this.laneLoops);
    await this.pool?.close();
    this.pool = null;
    await this.queue.settleWithin(STOP_SUBMIT_MS);
  }

  private readonly onTerms = (terms: UpstreamTerms): void => {
    this.jobs.onTerms(terms);
    this.replan();
  };

  private readonly onJob = (job: SourceJob): void => {
    this.jobs.onJob(job);
    this.replan();
  };

  /**
   * The source left or reached `live`. Leaving it pauses the workers (no hashing, and no
   * submits: the jobs are forgotten, so found shares still queued end as stale) until it is
   * live again and has a job.
   */
  private readonly onState = (state: SourceState): void => {
    const live = state === 'live';
    if (live === this.sourceLive) return;
    this.sourceLive = live;
    if (!live) this.jobs.clear();
    this.replan();
  };

  /** New generation: stops every task, then lets the lanes pick up the current work. */
  private replan(): void {
    const generation = nextGeneration(this.views);
    this.work = null;
    const current = this.jobs.current();
    if (this.running && this.sourceLive && current) {
      const { terms, job } = current;
      try {
        const algorithm = this.options.algorithm ?? this.source.algorithm;
        this.work = planWork(job, terms, algorithm, generation);
      } catch (err) {
        this.log.error({ err: (err as Error).message, jobId: job.jobId }, 'cannot mine job');
      }
    }
    for (const wake of this.wakeLanes.splice(0)) wake();
  }

  private async runLane(lane: number, pool: MinePool): Promise<void> {
    const state = this.lanes[lane] as Lane;
    while (this.running) {
      const work = this.work;
      const extranonce2 =
        work && extranonce2For(lane, state.round, this.threadCount, work.extranonce2Size);
      if (!work || extranonce2 === null) {
        if (work) this.log.warn({ lane }, 'extranonce2 space too small for this thread');
        await this.nextChange();
        continue;
      }
      state.round += 1;
      state.jobId = work.jobId;
      state.extranonce2 = extranonce2;
      try {
        const task = {
          algorithm: work.algorithm,
          lane,
          generation: work.generation,
          header76: header76For(work, extranonce2),
          target: work.target,
          control: this.control,
        };
        await pool.run(task, (nonce) => this.onFound(shareFor(work, extranonce2, nonce)));
      } catch (err) {
        if (!this.running) break;
        this.log.error({ err: (err as Error).message, lane }, 'mining task failed');
        await this.nextChange(RETRY_MS);
      } finally {
        state.jobId = null;
        state.extranonce2 = null;
      }
    }
  }

  /** Resolves on the next replan or stop (or after `timeoutMs`). */
  private nextChange(timeoutMs?: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = timeoutMs === undefined ? undefined : setTimeout(resolve, timeoutMs);
      this.wakeLanes.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private onFound(share: UpstreamShare): void {
    this.counts.found += 1;
    this.notify(() => this.emit('found', share));
    this.queue.push(share);
  }

  private onResult(result: ShareResult): void {
    if (result.stale) this.counts.stale += 1;
    else if (result.accepted) this.counts.accepted += 1;
    else this.counts.rejected += 1;
    if (!result.accepted) {
      this.log.info({ jobId: result.share.jobId, reason: result.reason }, 'share not accepted');
    }
    this.notify(() => this.emit('share', result));
  }

  private startTimers(): void {
    this.setDuty(this.duty.next());
    if (this.duty.jittering) {
      const drift = (): void => {
        this.setDuty(this.duty.next());
        this.driftTimer = setTimeout(drift, this.duty.holdMs()).unref();
      };
      this.driftTimer = setTimeout(drift, this.duty.holdMs()).unref();
    }
    this.meter.sample(performance.now(), this.stats().hashes);
    this.sampleTimer = setInterval(() => {
      this.hashrate = this.meter.sample(performance.now(), this.stats().hashes);
      this.notify(() => this.emit('hashrate', this.hashrate));
    }, this.options.sampleMs ?? 1_000).unref();
  }

  private setDuty(percent: number): void {
    this.dutyPercent = percent;
    writeDuty(this.views, percent);
  }

  /** A throwing listener must not break the share queue or a worker's lane. */
  private notify(emit: () => void): void {
    try {
      emit();
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'miner event listener threw');
    }
  }
}
