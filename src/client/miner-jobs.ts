import type { SourceJob, UpstreamShare, UpstreamTerms } from '../sources/work-source.js';

/**
 * What the source has said so far: the current terms and job, and which jobs a found share
 * may still be submitted for. The upstream keeps every job since its last clean job within
 * a session; a share of an older job (or of an earlier session) would only come back stale.
 */
export class JobTracker {
  private terms: UpstreamTerms | null = null;
  private job: SourceJob | null = null;
  private readonly live = new Set<string>();

  /** Jobs remembered when a source never sends a clean job (the oldest is forgotten). */
  static readonly LIVE_MAX = 256;

  onTerms(terms: UpstreamTerms): void {
    if (terms.session !== this.terms?.session) this.live.clear();
    this.terms = terms;
  }

  onJob(job: SourceJob): void {
    if (job.clean || job.session !== this.job?.session) this.live.clear();
    this.live.add(job.jobId);
    if (this.live.size > JobTracker.LIVE_MAX) {
      this.live.delete(this.live.values().next().value as string);
    }
    this.job = job;
  }

  /**
   * The source went down (or its upstream did): its jobs are gone there, so forget the job
   * and make every share still waiting stale. The terms stay: a source keeps them until new.
   */
  clear(): void {
    this.job = null;
    this.live.clear();
  }

  /** The job to mine and its terms, or null while they are missing or of different sessions. */
  current(): { terms: UpstreamTerms; job: SourceJob } | null {
    const { terms, job } = this;
    return terms && job && job.session === terms.session ? { terms, job } : null;
  }

  isLive(share: Pick<UpstreamShare, 'session' | 'jobId'>): boolean {
    return share.session === this.terms?.session && this.live.has(share.jobId);
  }
}
