import { Bucket } from './htb-bucket.js';
import type { ClassSpec } from './htb-config.js';
import { MAX_DEPTH } from './htb-config.js';
import { LeafQueue } from './htb-queue.js';

/** sch_htb's "not eligible" level: above every real level 0..7. */
export const NO_LEVEL = MAX_DEPTH;

/** A class of the tree at run time: its buckets, counters and (for a leaf) its queue. */
export class HtbClass<T> {
  readonly tokens: Bucket;
  readonly ctokens: Bucket;
  readonly children: HtbClass<T>[] = [];
  /**
   * sch_htb numbering: leaves are level 0, the root is level 7 and each inner class is one
   * below its parent. A leaf borrows "at level ℓ" from its ancestor of level ℓ, and lower
   * levels are served first, so the nearest lender serves before the ones above it.
   */
  level = 0;
  /** Index among the leaves (the DRR order); −1 for inner classes. */
  leafIndex = -1;
  readonly queue: LeafQueue<T>;
  /** DRR deficit per level (cl->leaf.deficit[level]). */
  readonly deficit = new Float64Array(MAX_DEPTH);

  bytesSent = 0;
  packetsSent = 0;
  /** Bytes this class sent above its rate, on a lender's tokens. */
  bytesBorrowed = 0;
  /** Bytes this class lent: sent by a borrowing descendant on this class's tokens. */
  bytesLent = 0;
  /** Packets refused by enqueue (queue full). */
  refused = 0;
  /** Exponentially weighted send rate (bytes/s) as of `rateAt`. */
  rateAvg = 0;
  rateAt = 0;

  /** Per-dequeue memo: the level this class lends at (see Htb.lendLevel). */
  memoStamp = 0;
  memoLevel = NO_LEVEL;

  constructor(
    readonly spec: ClassSpec,
    readonly parent: HtbClass<T> | null,
  ) {
    this.tokens = new Bucket(spec.rate, spec.burst);
    this.ctokens = new Bucket(spec.ceil, spec.cburst);
    this.queue = new LeafQueue<T>(spec.limit);
  }

  get name(): string {
    return this.spec.name;
  }

  get isLeaf(): boolean {
    return this.children.length === 0;
  }

  /** Adds `bytes` sent at `now` to the rate estimate (time constant `window` seconds). */
  countRate(bytes: number, now: number, window: number): void {
    this.rateAvg = this.rateNow(now, window) + bytes / window;
    this.rateAt = now;
  }

  /** The rate estimate decayed to `now`. */
  rateNow(now: number, window: number): number {
    const dt = now - this.rateAt;
    return dt > 0 ? this.rateAvg * Math.exp(-dt / window) : this.rateAvg;
  }
}
