/**
 * One token bucket of sch_htb, kept as time credit: `tokens` seconds of sending at the
 * bucket's rate, refilled one second per second up to the cap (burst / rate), and charged
 * len / rate per packet (htb_accnt_tokens, htb_accnt_ctokens).
 *
 * Instead of (tokens, t_c) we store `zeroAt`, the moment the credit is (or was) zero:
 * credit(t) = min(cap, t − zeroAt). "tokens ≥ 0" is then the exact comparison t ≥ zeroAt,
 * so a timer set to zeroAt always finds the bucket non-negative (no float drift), and a
 * refill costs nothing until the next charge.
 */

/** sch_htb's mbuffer: debt is bounded to 60 s so a long overdraft is forgiven eventually. */
const MAX_DEBT_SECONDS = 60;

export class Bucket {
  /** −∞: a new bucket is full, as sch_htb creates classes with tokens = buffer. */
  zeroAt = Number.NEGATIVE_INFINITY;
  /** Cap in seconds of credit (burst / rate). */
  readonly cap: number;
  /** Seconds per byte (1 / rate). */
  readonly perByte: number;

  constructor(rate: number, burst: number) {
    this.cap = burst / rate;
    this.perByte = 1 / rate;
  }

  /** Credit in seconds at `now` (negative: debt). */
  credit(now: number): number {
    return Math.min(this.cap, now - this.zeroAt);
  }

  /** Refill to `now`, then pay for `bytes`; the debt is floored like sch_htb's −mbuffer. */
  charge(bytes: number, now: number): void {
    const left = Math.max(this.credit(now) - bytes * this.perByte, -MAX_DEBT_SECONDS);
    this.zeroAt = now - left;
  }
}

/** Class modes of sch_htb (enum htb_cmode), here without hysteresis. */
export const Mode = { CANT_SEND: 0, MAY_BORROW: 1, CAN_SEND: 2 } as const;
export type Mode = (typeof Mode)[keyof typeof Mode];
export const MODE_NAMES = ['CANT_SEND', 'MAY_BORROW', 'CAN_SEND'] as const;

/** htb_class_mode: ctokens < 0 → CANT_SEND; else tokens ≥ 0 → CAN_SEND; else MAY_BORROW. */
export function modeAt(tokens: Bucket, ctokens: Bucket, now: number): Mode {
  if (now < ctokens.zeroAt) return Mode.CANT_SEND;
  return now >= tokens.zeroAt ? Mode.CAN_SEND : Mode.MAY_BORROW;
}
