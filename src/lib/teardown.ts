/**
 * Stops what a start acquired, in reverse order. A composition root adds each part's stop
 * right after the part exists, so a start that fails halfway and a normal close run the same
 * code and leave nothing running. Every stop runs even if one before it throws; the first
 * error is rethrown at the end.
 */
export class Teardown {
  private readonly steps: (() => unknown)[] = [];
  private running: Promise<void> | null = null;

  /** Run `stop` at teardown, before everything added earlier. */
  add(stop: () => unknown): void {
    if (this.running) throw new Error('teardown already ran');
    this.steps.push(stop);
  }

  /** Idempotent: a second call waits for the first. */
  run(): Promise<void> {
    this.running ??= this.unwind();
    return this.running;
  }

  private async unwind(): Promise<void> {
    const errors: unknown[] = [];
    for (const stop of this.steps.splice(0).reverse()) {
      try {
        await stop();
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length > 0) throw errors[0];
  }
}
