/**
 * Everything the demo starts registers how to undo itself here, as soon as it exists. Undoing
 * runs in reverse order of registration (the miner before the relay it mines for, the relays
 * before their nodes, the directory last), every step runs even when an earlier one fails,
 * and each is bounded in time so one stuck step cannot keep the others from running.
 *
 * `runAll` may be called from several places at once (Ctrl-C, a failed step, the end of the
 * run): they all get the same promise. Something registered after cleanup began (a start-up
 * step that was still in flight when Ctrl-C came) is undone right away.
 */

export interface CleanupFailure {
  name: string;
  error: string;
}

interface Step {
  name: string;
  run: () => Promise<void> | void;
}

const DEFAULT_STEP_TIMEOUT_MS = 20_000;

export class CleanupRegistry {
  private readonly steps: Step[] = [];
  private readonly failures: CleanupFailure[] = [];
  private draining: Promise<CleanupFailure[]> | null = null;

  constructor(private readonly stepTimeoutMs = DEFAULT_STEP_TIMEOUT_MS) {}

  /** True once `runAll` has been called: start-up should stop adding to what exists. */
  get started(): boolean {
    return this.draining !== null;
  }

  add(name: string, run: () => Promise<void> | void): void {
    this.steps.push({ name, run });
    if (this.draining) this.draining = this.draining.then(() => this.drain());
  }

  /** Undo everything registered so far, last first; resolves with the steps that failed. */
  runAll(): Promise<CleanupFailure[]> {
    this.draining ??= this.drain();
    return this.draining;
  }

  private async drain(): Promise<CleanupFailure[]> {
    for (let step = this.steps.pop(); step; step = this.steps.pop()) {
      try {
        await this.bounded(step);
      } catch (err) {
        this.failures.push({
          name: step.name,
          error: err instanceof Error ? err.message : String(err),
        });
      }
    }
    return [...this.failures];
  }

  private async bounded(step: Step): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`did not finish within ${this.stepTimeoutMs / 1000} s`)),
        this.stepTimeoutMs,
      );
    });
    try {
      await Promise.race([Promise.resolve().then(step.run), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}
