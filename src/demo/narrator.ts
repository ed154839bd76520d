import { performance } from 'node:perf_hooks';

/**
 * The demo's voice: one line per thing that happened, in plain words, stamped with the time
 * since the demo started so a newcomer can see how long each step takes. Event sources fire
 * far more often than anyone can read (on regtest nearly every share is a block), so the
 * narrator can tell the first few of a kind and leave the rest to periodic summaries.
 * Once the demo is stopping it goes quiet, except for what the shutdown itself says.
 */

export type Write = (text: string) => void;

export class Narrator {
  private readonly startedAt: number;
  private readonly told = new Map<string, number>();
  private muted = false;

  constructor(
    private readonly write: Write,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.startedAt = now();
  }

  /** A timestamped line: "[  12.3s] text". */
  say(text: string): void {
    if (this.muted) return;
    this.write(`[${this.elapsed().padStart(6)}s] ${text}\n`);
  }

  /** A line without a timestamp (headings, the dashboard URL). */
  plain(text: string): void {
    if (this.muted) return;
    this.write(`${text}\n`);
  }

  /** Say `text` only for the first `times` events of this kind; true when it was said. */
  firstFew(kind: string, times: number, text: () => string): boolean {
    const count = (this.told.get(kind) ?? 0) + 1;
    this.told.set(kind, count);
    if (count > times) return false;
    this.say(text());
    return true;
  }

  /** From now on only `final` lines are written (shutdown progress), events are dropped. */
  quiet(): void {
    this.muted = true;
  }

  /** A shutdown line, written even when quiet. */
  final(text: string): void {
    this.write(`[${this.elapsed().padStart(6)}s] ${text}\n`);
  }

  private elapsed(): string {
    return ((this.now() - this.startedAt) / 1000).toFixed(1);
  }
}
