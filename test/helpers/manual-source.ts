import { EventEmitter } from 'node:events';
import type {
  SourceJob,
  SourceState,
  SourceStatus,
  SubmitOutcome,
  UpstreamShare,
  UpstreamTerms,
  WorkSource,
  WorkSourceEvents,
} from '../../src/sources/work-source.js';
import type { Algorithm } from '../../src/work/algorithm.js';
import { BIP320_MASK } from '../../src/work/version.js';

/**
 * A WorkSource driven by the test: it emits what the test tells it to and records what is
 * submitted. For unit tests of the relay's own logic; end-to-end tests use the real sources
 * (litecoind, the scripted Stratum pool).
 */
export class ManualSource extends EventEmitter<WorkSourceEvents> implements WorkSource {
  readonly submitted: UpstreamShare[] = [];
  /** How submit answers; tests replace it. */
  answer: (share: UpstreamShare) => SubmitOutcome | Promise<SubmitOutcome> = () => ({
    accepted: true,
  });
  private state: SourceState = 'connecting';
  private terms: UpstreamTerms | null = null;
  private job: SourceJob | null = null;
  private jobCounter = 0;

  constructor(readonly algorithm: Algorithm = 'sha256d') {
    super();
  }

  /** Between start() and stop(): what a relay's start and close must leave it as. */
  running = false;

  start(): void {
    this.running = true;
  }

  stop(): Promise<void> {
    this.running = false;
    return Promise.resolve();
  }

  status(): SourceStatus {
    return { state: this.state, upstream: 'manual', terms: this.terms, job: this.job };
  }

  submit(share: UpstreamShare): Promise<SubmitOutcome> {
    this.submitted.push(share);
    return Promise.resolve(this.answer(share));
  }

  /** Go live with these terms and a first clean job. */
  goLive(terms: Partial<UpstreamTerms> = {}): SourceJob {
    this.setTerms(terms);
    const job = this.newJob({ clean: true });
    this.setState('live');
    return job;
  }

  setTerms(terms: Partial<UpstreamTerms> = {}): UpstreamTerms {
    this.terms = {
      session: terms.session ?? (this.terms ? this.terms.session : 1),
      extranonce1: terms.extranonce1 ?? 'f000000d',
      extranonce2Size: terms.extranonce2Size ?? 8,
      difficulty: terms.difficulty ?? 1,
      versionMask: terms.versionMask === undefined ? BIP320_MASK : terms.versionMask,
    };
    this.emit('terms', this.terms);
    return this.terms;
  }

  newJob(fields: Partial<SourceJob> = {}): SourceJob {
    this.jobCounter += 1;
    this.job = {
      session: this.terms?.session ?? 1,
      jobId: `up${this.jobCounter}`,
      prevhash: (fields.clean ?? true) ? randomHex(32) : (this.job?.prevhash ?? randomHex(32)),
      coinb1:
        '01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20',
      coinb2:
        'ffffffff0100f2052a010000001976a914000000000000000000000000000000000000000088ac00000000',
      merkleBranch: [randomHex(32)],
      version: '20000000',
      nbits: '207fffff',
      ntime: Math.floor(Date.now() / 1000)
        .toString(16)
        .padStart(8, '0'),
      clean: true,
      ...fields,
    };
    this.emit('job', this.job);
    return this.job;
  }

  setState(state: SourceState): void {
    this.state = state;
    this.emit('state', state);
  }
}

function randomHex(bytes: number): string {
  let out = '';
  for (let i = 0; i < bytes; i++)
    out += Math.floor(Math.random() * 256)
      .toString(16)
      .padStart(2, '0');
  return out;
}
