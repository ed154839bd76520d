import { Backoff } from '../lib/backoff.js';
import { RpcError, RpcErrorCode } from '../protocol/errors.js';
import type { JobParams, RegisterResult } from '../protocol/messages.js';
import type {
  SourceJob,
  SubmitOutcome,
  UpstreamShare,
  UpstreamTerms,
} from '../sources/work-source.js';
import { PageCircuit } from './page-circuit.js';

/**
 * The miner page's circuit as a source of work, the way src/client/circuit-source.ts is for
 * `powbridge mine`: register (tickets or donate), turn the relay's notifications into terms
 * and jobs of one session per circuit (a difficulty applies from the next job, as Stratum
 * miners do: docs/design.md §5), pause while the relay's upstream is down, submit shares and
 * keep the credit the relay reports. A lost circuit is retried with backoff (and no sooner
 * than a register refused with 37 asks).
 */

export type SessionLink =
  'connecting' | 'waiting' | 'live' | 'no-upstream' | 'retrying' | 'stopped';

export interface SessionEvents {
  terms(terms: UpstreamTerms): void;
  job(job: SourceJob): void;
  /** Whether the relay can use work now (the miner hashes only then). */
  live(live: boolean): void;
  registered(result: RegisterResult): void;
  credit(credit: number): void;
  link(link: SessionLink, detail: string): void;
}

/** The longest wait a relay's `retryAfter` can impose (as the CLI's). */
const MAX_RETRY_AFTER_MS = 10 * 60_000;

export class PageSession {
  private circuit: PageCircuit | null = null;
  private running = false;
  private session = 0;
  private terms: UpstreamTerms | null = null;
  private nextDifficulty: number | null = null;
  private upstreamDown = false;
  private held: SourceJob | null = null;
  private hasJob = false;
  private credit = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly backoff = new Backoff({ minMs: 1_000, maxMs: 60_000 });

  constructor(
    private readonly options: { url: string; mode: 'tickets' | 'donate' },
    private readonly on: SessionEvents,
  ) {}

  /** The open circuit, for ticket requests (null while reconnecting). */
  get openCircuit(): PageCircuit | null {
    return this.circuit?.open ? this.circuit : null;
  }

  get currentCredit(): number {
    return this.credit;
  }

  /** The relay deducted `amount` (a ticket session opened): keep the shown credit in step. */
  noteSpent(amount: number): void {
    this.credit = Math.max(0, this.credit - amount);
    this.on.credit(this.credit);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    void this.connect();
  }

  stop(): void {
    this.running = false;
    clearTimeout(this.retryTimer);
    this.circuit?.close();
    this.circuit = null;
    this.setLive(false);
    this.on.link('stopped', '');
  }

  async submit(share: UpstreamShare): Promise<SubmitOutcome> {
    const circuit = this.circuit;
    if (share.session !== this.session || !circuit?.open) {
      return { accepted: false, reason: 'stale share: job from an earlier circuit' };
    }
    try {
      const { credit } = await circuit.request('mining.submit', {
        jobId: share.jobId,
        extranonce2: share.extranonce2,
        ntime: share.ntime,
        nonce: share.nonce,
        ...(share.versionBits !== undefined ? { versionBits: share.versionBits } : {}),
      });
      this.credit = credit;
      this.on.credit(credit);
      return { accepted: true };
    } catch (err) {
      if (err instanceof RpcError) return { accepted: false, reason: err.message, code: err.code };
      return { accepted: false, reason: err instanceof Error ? err.message : String(err) };
    }
  }

  private async connect(): Promise<void> {
    this.on.link('connecting', '');
    this.terms = null;
    this.nextDifficulty = null;
    this.upstreamDown = false;
    this.held = null;
    this.session += 1;
    const session = this.session;
    // Until the register is answered, what the relay sends waits, in order.
    let early: (() => void)[] | null = [];
    const deliver = (handle: () => void): void => {
      if (early) early.push(handle);
      else if (session === this.session) handle();
    };
    let circuit: PageCircuit;
    try {
      circuit = await PageCircuit.open(this.options.url, {
        job: (job) => deliver(() => this.onJob(job, session)),
        difficulty: (difficulty) => deliver(() => (this.nextDifficulty = difficulty)),
        extranonce: (e) =>
          deliver(() =>
            this.updateTerms({ extranonce1: e.extranonce1, extranonceSize: e.extranonce2Size }),
          ),
        versionMask: (m) => deliver(() => this.updateTerms({ versionMask: m.versionMask })),
        relayState: (s) => deliver(() => this.onRelayState(s.upstream === 'live', s.message)),
        protocolError: () => undefined,
        close: (reason) => {
          if (session === this.session) this.lost(`the relay closed the circuit (${reason})`, null);
        },
      });
    } catch (err) {
      this.lost(err instanceof Error ? err.message : String(err), null);
      return;
    }
    if (!this.running) {
      circuit.close();
      return;
    }
    this.circuit = circuit;
    try {
      const result = await circuit.request('mining.register', {
        agent: 'powbridge-page',
        mode: this.options.mode,
      });
      this.backoff.reset();
      this.credit = 0;
      this.on.credit(0);
      this.updateTerms({
        extranonce1: result.extranonce1,
        extranonceSize: result.extranonce2Size,
        difficulty: result.difficulty,
        versionMask: result.versionMask,
      });
      this.on.registered(result);
      this.on.link('waiting', '');
      for (const handle of early.splice(0)) handle();
      early = null;
    } catch (err) {
      circuit.close();
      this.lost(err instanceof Error ? err.message : String(err), err);
    }
  }

  /** The circuit is gone (or never came): pause, and try again after the backoff. */
  private lost(reason: string, failure: unknown): void {
    this.circuit = null;
    this.hasJob = false;
    this.setLive(false);
    if (!this.running) return;
    let delayMs = this.backoff.next();
    if (failure instanceof RpcError && failure.code === RpcErrorCode.relayFull) {
      const retryAfter = failure.retryAfter;
      if (retryAfter !== undefined) {
        delayMs = Math.max(delayMs, Math.min(retryAfter * 1000, MAX_RETRY_AFTER_MS));
      }
    }
    this.on.link('retrying', `${reason}; next try in ${Math.round(delayMs / 1000)} s`);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.connect(), delayMs);
  }

  private updateTerms(change: {
    extranonce1?: string;
    extranonceSize?: number;
    difficulty?: number;
    versionMask?: string | null;
  }): void {
    const base = this.terms ?? {
      session: this.session,
      extranonce1: '',
      extranonce2Size: 0,
      difficulty: 1,
      versionMask: null,
    };
    this.terms = {
      session: this.session,
      extranonce1: change.extranonce1 ?? base.extranonce1,
      extranonce2Size: change.extranonceSize ?? base.extranonce2Size,
      difficulty: change.difficulty ?? base.difficulty,
      versionMask:
        change.versionMask === undefined
          ? base.versionMask
          : change.versionMask === null
            ? null
            : Number.parseInt(change.versionMask, 16) >>> 0,
    };
    this.on.terms(this.terms);
  }

  private onJob(params: JobParams, session: number): void {
    const job: SourceJob = { ...params, session };
    if (this.upstreamDown) {
      // Mined once the relay says live again, as a fresh start (the relay dropped its jobs).
      this.held = { ...job, clean: true };
      return;
    }
    this.handOut(job);
    this.setLive(true);
  }

  private handOut(job: SourceJob): void {
    if (this.nextDifficulty !== null) {
      this.updateTerms({ difficulty: this.nextDifficulty });
      this.nextDifficulty = null;
    }
    this.hasJob = true;
    this.on.job(job);
  }

  private onRelayState(live: boolean, message: string): void {
    if (!live) {
      this.upstreamDown = true;
      this.held = null;
      this.hasJob = false;
      this.setLive(false);
      this.on.link('no-upstream', message);
      return;
    }
    this.upstreamDown = false;
    const held = this.held;
    this.held = null;
    if (held) this.handOut(held);
    if (this.hasJob) this.setLive(true);
    else this.on.link('waiting', '');
  }

  private setLive(live: boolean): void {
    if (live) this.on.link('live', '');
    this.on.live(live);
  }
}
