import type { MinerStats, ShareResult } from '../client/miner-stats.js';
import type { MineResult, MineTask } from '../client/miner-worker.js';
import { HashrateMeter } from '../client/miner-stats.js';
import {
  type ControlViews,
  controlViews,
  createControl,
  laneHashes,
  nextGeneration,
  writeDuty,
} from '../client/miner-control.js';
import { DutyDrift } from '../client/miner-duty.js';
import { JobTracker } from '../client/miner-jobs.js';
import { ShareQueue } from '../client/miner-share-queue.js';
import {
  extranonce2For,
  header76For,
  type PlannedWork,
  planWork,
  shareFor,
} from '../client/miner-work.js';
import type {
  SourceJob,
  SubmitOutcome,
  UpstreamShare,
  UpstreamTerms,
} from '../sources/work-source.js';
import type { Algorithm } from '../work/algorithm.js';

/**
 * The miner of the page, built from the CLI miner's parts (src/client/miner.ts): the job
 * tracker, the work planning, the control block in shared memory, the share queue, the hash
 * rate meter and the duty-cycle drift. What differs is only where lanes run (Web Workers,
 * worker-lanes.ts) and that a browser tab has no process to unref timers in.
 *
 * Lane i mines extranonce2 i, i + threads, … one whole nonce range per task; a new job or new
 * terms starts a new generation and every running task returns within one kernel call.
 */

/**
 * What the miner needs of its lanes: the Web Workers (WorkerLanes, worker-lanes.ts), or a
 * test's stand-in (no DOM needed to type it).
 */
export interface MiningLanes {
  readonly threads: number;
  run(
    lane: number,
    task: Omit<MineTask, 'port'>,
    onNonce: (nonce: number) => void,
  ): Promise<MineResult>;
  close(): void;
}

export interface PageMinerOptions {
  algorithm: Algorithm;
  lanes: MiningLanes;
  submit: (share: UpstreamShare) => Promise<SubmitOutcome>;
  /** Duty cycle, percent of each worker's time spent hashing. */
  cpuPercent: number;
  /** Random drift of the duty cycle, percent of it (the CLI's --jitter; 0 = steady). */
  jitterPercent: number;
  random: () => number;
  onShare: (result: ShareResult) => void;
}

interface Lane {
  round: number;
  jobId: string | null;
  extranonce2: string | null;
}

const RETRY_MS = 1_000;
const HASHRATE_WINDOW_MS = 10_000;
const SAMPLE_MS = 1_000;

export class PageMiner {
  private readonly control: SharedArrayBuffer;
  private readonly views: ControlViews;
  private readonly duty: DutyDrift;
  private readonly meter = new HashrateMeter(HASHRATE_WINDOW_MS);
  private readonly jobs = new JobTracker();
  private readonly queue: ShareQueue;
  private readonly lanes: Lane[];
  private readonly counts = { found: 0, accepted: 0, rejected: 0, stale: 0 };
  private running = false;
  private sourceLive = false;
  private work: PlannedWork | null = null;
  private wakeLanes: (() => void)[] = [];
  private driftTimer: ReturnType<typeof setTimeout> | undefined;
  private sampleTimer: ReturnType<typeof setInterval> | undefined;
  /** Null until the meter has two samples: a rate of 0 before then would be a guess. */
  private hashrate: number | null = null;
  private dutyPercent: number;
  /** Why the current job cannot be mined, if it cannot. */
  problem: string | null = null;

  constructor(private readonly options: PageMinerOptions) {
    const threads = options.lanes.threads;
    this.control = createControl(threads);
    this.views = controlViews(this.control);
    this.duty = new DutyDrift({
      cpuPercent: options.cpuPercent,
      jitterPercent: options.jitterPercent,
      random: options.random,
    });
    this.dutyPercent = options.cpuPercent;
    this.queue = new ShareQueue(
      (share) => options.submit(share),
      (share) => this.jobs.isLive(share),
      (result) => this.onResult(result),
    );
    this.lanes = Array.from({ length: threads }, () => ({
      round: 0,
      jobId: null,
      extranonce2: null,
    }));
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.setDuty(this.duty.next());
    if (this.duty.jittering) {
      const drift = (): void => {
        this.setDuty(this.duty.next());
        this.driftTimer = setTimeout(drift, this.duty.holdMs());
      };
      this.driftTimer = setTimeout(drift, this.duty.holdMs());
    }
    this.meter.sample(performance.now(), this.totalHashes());
    this.sampleTimer = setInterval(() => {
      this.hashrate = this.meter.sample(performance.now(), this.totalHashes());
    }, SAMPLE_MS);
    // A lane whose worker is terminated mid-task waits forever on it: nothing holds on to it.
    for (let lane = 0; lane < this.lanes.length; lane++) void this.runLane(lane);
  }

  /** Stop the lanes and end the workers; shares already found are still submitted. */
  stop(): void {
    if (!this.running) return;
    this.running = false;
    clearTimeout(this.driftTimer);
    clearInterval(this.sampleTimer);
    this.hashrate = null;
    this.replan();
    this.options.lanes.close();
  }

  onTerms(terms: UpstreamTerms): void {
    this.jobs.onTerms(terms);
    this.replan();
  }

  onJob(job: SourceJob): void {
    this.jobs.onJob(job);
    this.replan();
  }

  setLive(live: boolean): void {
    if (live === this.sourceLive) return;
    this.sourceLive = live;
    if (!live) this.jobs.clear();
    this.replan();
  }

  /** Hashes per second over the meter's window; null until a second has been measured. */
  get measuredHashrate(): number | null {
    return this.hashrate;
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
      hashrate: this.hashrate ?? 0,
      dutyPercent: this.dutyPercent,
      ...this.counts,
    };
  }

  private totalHashes(): number {
    return this.lanes.reduce((sum, _, i) => sum + laneHashes(this.views, i), 0);
  }

  private replan(): void {
    const generation = nextGeneration(this.views);
    this.work = null;
    this.problem = null;
    const current = this.jobs.current();
    if (this.running && this.sourceLive && current) {
      try {
        this.work = planWork(current.job, current.terms, this.options.algorithm, generation);
      } catch (err) {
        this.problem = err instanceof Error ? err.message : String(err);
      }
    }
    for (const wake of this.wakeLanes.splice(0)) wake();
  }

  private async runLane(lane: number): Promise<void> {
    const state = this.lanes[lane];
    if (!state) return;
    const threads = this.lanes.length;
    while (this.running) {
      const work = this.work;
      const extranonce2 = work && extranonce2For(lane, state.round, threads, work.extranonce2Size);
      if (!work || extranonce2 === null) {
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
        await this.options.lanes.run(lane, task, (nonce) =>
          this.onFound(shareFor(work, extranonce2, nonce)),
        );
      } catch (err) {
        if (!this.running) break;
        this.problem = err instanceof Error ? err.message : String(err);
        await this.nextChange(RETRY_MS);
      } finally {
        state.jobId = null;
        state.extranonce2 = null;
      }
    }
  }

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
    this.queue.push(share);
  }

  private onResult(result: ShareResult): void {
    if (result.stale) this.counts.stale += 1;
    else if (result.accepted) this.counts.accepted += 1;
    else this.counts.rejected += 1;
    this.options.onShare(result);
  }

  private setDuty(percent: number): void {
    this.dutyPercent = percent;
    writeDuty(this.views, percent);
  }
}
