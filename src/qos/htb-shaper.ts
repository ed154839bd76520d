import { Htb, htbSpec, parseHtbConfig } from './htb.js';
import type { ClassStats, HtbClassTree, HtbInput, HtbSpec } from './htb.js';
import { FREE_CLASS } from './shaper.js';
import type { Shaper, ShapingGrant } from './shaper.js';
import { DEFAULT_TICKET_GROUPS, groupFor, type TicketGroup } from './ticket-groups.js';

/**
 * The tunnel's Shaper (shaper.ts) driven by the pure HTB of docs/design.md §8 (htb.ts). The HTB
 * decides the order and the moment; this class owns the clock and the one timer.
 *
 * Every `request` becomes a packet whose ref settles the tunnel's promise. A pump dequeues
 * everything the HTB allows at the current monotonic time, then arms a single timer at
 * `nextEventTime` — never a poll, never a busy loop. A leaf queue that is full (its byte
 * `limit`) does not drop: the request waits in a per-leaf overflow FIFO and moves into the
 * HTB as its leaf drains. That overflow stays small in practice because the tunnel asks for
 * one chunk at a time per stream direction and pauses its socket meanwhile, so it is bounded
 * by the number of open directions, not by the bytes peers send.
 */

export interface HtbShaperOptions {
  /**
   * A class tree already checked by its schema (the relay config's `tunnel.classes`): used as
   * it is, without a second check. Wins over `config`.
   */
  classes?: HtbClassTree;
  /** A class tree for parseHtbConfig; default: defaultHtbConfig(linkBitsPerSecond). */
  config?: HtbInput;
  /** Scales the default tree (ignored with `classes` or `config`); default 10 Mbit/s as in the paper. */
  linkBitsPerSecond?: number;
  /** Bucket size of the default tree in seconds of rate (default tc's 0.001; see defaultHtbConfig). */
  burstSeconds?: number;
  /** The leaf for streams without a live grant; default 'free'. */
  freeLeaf?: string;
  /**
   * Ticket thresholds; default 1 → 'group4', 4 → 'group1' (docs/design.md §8). The relay
   * config checks a mapping against its tree (ticket-groups.ts); here only that the leaves exist.
   */
  groups?: readonly TicketGroup[];
  /** Time constant of the per-class rate estimates in seconds (default 1). */
  rateWindow?: number;
  /** Monotonic seconds; default performance.now() / 1000 (wall clocks can step back). */
  clock?: () => number;
}

export const DEFAULT_LINK_BITS_PER_SECOND = 10e6;

/**
 * docs/design.md §8's tree (the paper's Figure 1) with every rate a fraction of the link: root 10/10;
 * free 2/4 prio 7; paid 8/10 split into group1 4/10 prio 0 (the top tier, 4+ tickets) and
 * group4 1.5/10 prio 3 (1–3 tickets) — in Mbit/s at the default 10 Mbit/s link. Bursts and
 * quanta keep sch_htb's defaults.
 */
const MTU = 1600;

/**
 * docs/design.md §8's tree scaled to the link. `burstSeconds` sizes the buckets: tc's default is
 * 1 ms of rate (right for kernel timers); a relay should give its event-loop pump more
 * (e.g. 20 ms), because timers fire milliseconds late under load and credit beyond the
 * burst is lost, so a tiny burst turns timer lateness into lost rate.
 */
export function defaultHtbConfig(
  linkBitsPerSecond: number = DEFAULT_LINK_BITS_PER_SECOND,
  burstSeconds = 0.001,
): HtbInput {
  if (!(linkBitsPerSecond > 0) || !Number.isFinite(linkBitsPerSecond)) {
    throw new RangeError(`link rate must be a positive number of bits/s, not ${linkBitsPerSecond}`);
  }
  // Bytes per second; the fractions are those of the 10 Mbit/s figure.
  const at = (fraction: number): number => (linkBitsPerSecond * fraction) / 8;
  const cls = (name: string, rate: number, ceil: number, extra: object = {}) => ({
    name,
    rate,
    ceil,
    burst: Math.ceil(rate * burstSeconds + MTU),
    cburst: Math.ceil(ceil * burstSeconds + MTU),
    ...extra,
  });
  return {
    classes: [
      cls('root', at(1), at(1)),
      cls(FREE_CLASS, at(0.2), at(0.4), { parent: 'root', prio: 7 }),
      cls('paid', at(0.8), at(1), { parent: 'root' }),
      cls('group1', at(0.4), at(1), { parent: 'paid', prio: 0 }),
      cls('group4', at(0.15), at(1), { parent: 'paid', prio: 3 }),
    ],
  };
}

/** A request waiting to be granted; settling twice is harmless (close() and a dequeue). */
type Grant = () => void;

interface Waiting {
  bytes: number;
  grant: Grant;
}

export class HtbShaper implements Shaper {
  readonly htb: Htb<Grant>;
  readonly freeLeaf: string;
  private readonly groups: TicketGroup[];
  /** Byte limit of each leaf's queue: a request above it is split so it can ever be queued. */
  private readonly limits = new Map<string, number>();
  /** Requests refused by a full leaf queue, per leaf, in arrival order (only non-empty). */
  private readonly overflow = new Map<string, Waiting[]>();
  /** Every grant not yet settled, so close() can settle them all. */
  private readonly pending = new Set<Grant>();
  private readonly clock: () => number;
  private timer: NodeJS.Timeout | null = null;
  /** The HTB time the timer is armed for (to avoid re-arming it for the same moment). */
  private timerAt = Number.NaN;
  private closed = false;

  constructor(options: HtbShaperOptions = {}) {
    const spec: HtbSpec = options.classes
      ? htbSpec(options.classes)
      : parseHtbConfig(
          options.config ?? defaultHtbConfig(options.linkBitsPerSecond, options.burstSeconds),
        );
    this.htb = new Htb<Grant>(spec, { rateWindow: options.rateWindow ?? 1 });
    this.clock = options.clock ?? (() => performance.now() / 1000);
    const leaves = new Set(this.htb.leafNames);
    for (const c of spec.classes) if (leaves.has(c.name)) this.limits.set(c.name, c.limit);
    this.freeLeaf = options.freeLeaf ?? FREE_CLASS;
    // Increasing thresholds, as groupFor reads them.
    this.groups = [...(options.groups ?? DEFAULT_TICKET_GROUPS)].sort(
      (a, b) => a.minTickets - b.minTickets,
    );
    // A typo in the mapping would otherwise surface only as a RangeError mid-stream.
    for (const leaf of [this.freeLeaf, ...this.groups.map((g) => g.leaf)]) {
      if (!leaves.has(leaf)) throw new RangeError(`htb shaper: "${leaf}" is not a leaf class`);
    }
    if (this.groups.length === 0) throw new RangeError('htb shaper: needs at least one group');
  }

  /** Config warnings (children's rates above their parent's, unreachable ceils). */
  get warnings(): readonly string[] {
    return this.htb.warnings;
  }

  /** null → the free leaf; else the group of the grant's tickets in the window (groupFor). */
  classify(grant: ShapingGrant | null): string {
    return grant === null ? this.freeLeaf : groupFor(this.groups, grant.tickets);
  }

  /**
   * Undefined when the HTB lets the bytes go at once (the tunnel's fast path needs no
   * promise), else a promise that resolves when they may go. Never rejects; throws
   * synchronously only for a leaf this shaper does not have (a caller bug, not a stream
   * condition). After close() every request is granted at once.
   */
  request(leaf: string, bytes: number): Promise<void> | void {
    const limit = this.limits.get(leaf);
    if (limit === undefined) throw new RangeError(`htb shaper: no leaf class "${leaf}"`);
    if (this.closed || !(bytes > 0)) return;
    let resolve: (() => void) | null = null;
    let settled = false;
    const grant: Grant = () => {
      if (settled) return;
      settled = true;
      this.pending.delete(grant);
      resolve?.();
    };
    this.pending.add(grant);
    // A chunk above the queue limit could never be enqueued; charge it as limit-sized pieces
    // in order, and let only the last one settle the request.
    const noop: Grant = () => {};
    for (let left = bytes; left > 0; left -= limit) {
      this.submit(leaf, Math.min(left, limit), left > limit ? noop : grant);
    }
    this.pump();
    if (settled) return;
    return new Promise<void>((r) => {
      resolve = r;
    });
  }

  /** Per-class counters, buckets and rates (bytes/s) for status and metrics. */
  stats(): ClassStats[] {
    return this.htb.allStats(this.clock());
  }

  /** Whether the pump's timer is armed (false once nothing waits, and after close()). */
  get timerArmed(): boolean {
    return this.timer !== null;
  }

  /** Requests not yet granted (queued in the HTB or waiting in overflow). */
  get waiting(): number {
    return this.pending.size;
  }

  /** Stop the timer and settle every pending request (the tunnel is shutting down). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.disarm();
    this.overflow.clear();
    for (const grant of [...this.pending]) grant();
  }

  /** Queue in the HTB, or behind earlier overflow of the same leaf to keep its order. */
  private submit(leaf: string, bytes: number, grant: Grant): void {
    const waiting = this.overflow.get(leaf);
    if (waiting !== undefined) {
      waiting.push({ bytes, grant });
      return;
    }
    if (!this.htb.enqueue(leaf, { bytes, ref: grant })) {
      this.overflow.set(leaf, [{ bytes, grant }]);
    }
  }

  /** Move overflow into leaf queues that have room again, oldest first, per leaf. */
  private refill(): void {
    for (const [leaf, waiting] of this.overflow) {
      let moved = 0;
      while (moved < waiting.length) {
        const w = waiting[moved] as Waiting;
        if (!this.htb.enqueue(leaf, { bytes: w.bytes, ref: w.grant })) break;
        moved++;
      }
      if (moved === waiting.length) this.overflow.delete(leaf);
      else if (moved > 0) waiting.splice(0, moved);
    }
  }

  /** Grant all the HTB allows now, then sleep until the next moment it could allow more. */
  private pump(): void {
    if (this.closed) return;
    const now = this.clock();
    for (let packet = this.htb.dequeue(now); packet !== null; packet = this.htb.dequeue(now)) {
      packet.ref();
      if (this.overflow.size > 0) this.refill();
    }
    const next = this.htb.nextEventTime(now);
    if (next === null) return this.disarm();
    if (this.timer !== null && this.timerAt === next) return;
    this.disarm();
    // Timers have millisecond granularity and may fire a little early relative to
    // performance.now(); waiting at least 1 ms means an early wake-up costs one re-arm, never
    // a spin. Lateness is not lost: a bucket keeps credit up to its burst past zero.
    const delay = Math.max(1, Math.ceil((next - now) * 1000));
    this.timerAt = next;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.timerAt = Number.NaN;
      this.pump();
    }, delay);
    // Waiting streams keep the process alive by their sockets, not by the shaper's timer.
    this.timer.unref();
  }

  private disarm(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = Number.NaN;
  }
}
