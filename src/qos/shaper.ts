/**
 * What the priority tunnel needs from a traffic shaper (docs/design.md §8), so the tunnel does not
 * depend on the HTB's internals. The tunnel asks before every chunk it forwards, in either
 * direction, and keeps that direction's source paused until the answer comes: the shaper
 * decides *when* bytes move, the tunnel makes sure nothing piles up meanwhile.
 *
 * What an implementation (the HTB) must provide:
 * - `classify` is pure and cheap: the tunnel calls it for every chunk so that a grant that
 *   expires mid-stream moves the stream to the free class at once. It returns the name of a
 *   leaf class; `null` (no grant, or an expired one) must map to the free class.
 * - `request(leaf, bytes)` returns nothing (or a resolved promise) when the bytes may go now,
 *   else a promise that resolves when they may. Requests of one leaf are granted in order.
 *   `bytes` can exceed a bucket's burst (a chunk is up to the tunnel's frame size, 64 KiB by
 *   default): grant it when the bucket is not in debt and charge the whole chunk, rather than
 *   waiting for a balance it can never reach.
 * - A promise must always settle, also for leaves whose streams have closed meanwhile (the
 *   tunnel then drops the chunk); it must never reject for a class it handed out.
 */

/** The part of a grant that matters for shaping: tickets paid select the paid group. */
export interface ShapingGrant {
  readonly tickets: number;
}

export interface Shaper {
  /** The leaf class for a stream holding `grant` (null: no live grant, the free class). */
  classify(grant: ShapingGrant | null): string;
  /** Settles when `bytes` of the leaf may be sent; undefined means now. */
  request(leaf: string, bytes: number): Promise<void> | void;
}

export const FREE_CLASS = 'free';
export const PAID_CLASS = 'paid';

/** No shaping at all: every chunk goes at once. Used until the HTB is wired in. */
export class UnshapedShaper implements Shaper {
  classify(grant: ShapingGrant | null): string {
    return grant === null ? FREE_CLASS : PAID_CLASS;
  }

  request(): void {}
}
