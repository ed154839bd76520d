import { TokenBucket } from './token-bucket.js';

/**
 * Admission at a steady rate for many senders together, first come first served: `perSecond`
 * units (a token bucket holding `burstSeconds` of them), and whoever finds none waits in one
 * queue until a unit is free. A sender that waits stops reading its socket meanwhile, so what
 * it sends beyond the rate costs nothing: it stays in the kernel's buffers and then the
 * sender's. Time comes from `clock` (milliseconds) and timers from `timers`, so tests can step
 * both by hand.
 */

export interface PacedQueueOptions {
  perSecond: number;
  /** Default 1 s. */
  burstSeconds?: number;
  clock?: () => number;
  timers?: {
    set: (run: () => void, ms: number) => unknown;
    clear: (timer: unknown) => void;
  };
}

interface Waiter {
  run: () => void;
  /** Ran, or cancelled: skipped when its turn comes. */
  done: boolean;
}

/** The queue is looked at no more often than this: units come due in between. */
const MIN_TICK_MS = 10;

export class PacedQueue {
  private readonly bucket: TokenBucket;
  private readonly tickMs: number;
  private readonly waiting: Waiter[] = [];
  private readonly timers: NonNullable<PacedQueueOptions['timers']>;
  private timer: unknown = null;
  /** Waiters neither run nor cancelled. */
  private live = 0;

  constructor(options: PacedQueueOptions) {
    this.bucket = new TokenBucket({
      perSecond: options.perSecond,
      burstSeconds: options.burstSeconds ?? 1,
      ...(options.clock ? { clock: options.clock } : {}),
    });
    this.tickMs = Math.max(MIN_TICK_MS, 1000 / options.perSecond);
    this.timers = options.timers ?? {
      set: (run, ms) => {
        const timer = setTimeout(run, ms);
        timer.unref();
        return timer;
      },
      clear: (timer) => clearTimeout(timer as NodeJS.Timeout),
    };
  }

  /** Senders waiting now. */
  get queued(): number {
    return this.live;
  }

  /** A unit now, if nobody is waiting for one (no overtaking the queue). */
  tryNow(): boolean {
    return this.live === 0 && this.bucket.take();
  }

  /**
   * Run `run` when a unit is free for it, after everyone queued before; returns a cancel for a
   * sender that goes away (its place then costs no unit).
   */
  enqueue(run: () => void): () => void {
    const waiter: Waiter = { run, done: false };
    this.waiting.push(waiter);
    this.live += 1;
    this.schedule();
    return () => {
      if (waiter.done) return;
      waiter.done = true;
      this.live -= 1;
    };
  }

  /** Drop every waiter and the timer (shutdown). */
  close(): void {
    this.waiting.length = 0;
    this.live = 0;
    if (this.timer !== null) this.timers.clear(this.timer);
    this.timer = null;
  }

  private schedule(): void {
    if (this.timer !== null || this.live === 0) return;
    this.timer = this.timers.set(() => this.drain(), this.tickMs);
  }

  private drain(): void {
    this.timer = null;
    for (let first = this.waiting[0]; first !== undefined; first = this.waiting[0]) {
      if (first.done) {
        this.waiting.shift();
        continue;
      }
      if (!this.bucket.take()) break;
      this.waiting.shift();
      first.done = true;
      this.live -= 1;
      first.run();
    }
    this.schedule();
  }
}
