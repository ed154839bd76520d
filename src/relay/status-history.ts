import type { RelayStatus, StatusHistoryAnswer } from './status-schema.js';

/**
 * The relay's recent past (issue 16): a ring of samples of its status numbers, one every
 * `intervalSeconds`, served at GET /v1/status/history so the dashboard shows the last hours as
 * soon as it loads instead of starting empty. Each series is a Float64Array of `capacity`
 * slots, so memory is fixed up front (24 h at 10 s is 8,640 slots, 69 KB per series) whatever
 * the relay does. Counters are kept as totals, not rates: any two samples give the rate
 * between them, and thinning an answer (maxSamples) loses no counted event.
 */

export interface StatusHistoryOptions {
  /** The numbers of one sample by series name, read at every tick. */
  read: () => Readonly<Record<string, number>>;
  /** Seconds between samples. */
  intervalSeconds: number;
  /** Samples kept; the oldest is overwritten. */
  capacity: number;
  /**
   * Unix seconds. Default: the wall clock at start advanced by the monotonic clock, so a
   * system clock stepping back cannot disorder the samples.
   */
  now?: () => number;
  /** Most series kept (names beyond it are ignored): bounds memory if `read` misbehaves. */
  maxSeries?: number;
}

const DEFAULT_MAX_SERIES = 256;

export class StatusHistory {
  readonly intervalSeconds: number;
  readonly capacity: number;
  private readonly read: () => Readonly<Record<string, number>>;
  private readonly now: () => number;
  private readonly maxSeries: number;
  private readonly times: Float64Array;
  private readonly columns = new Map<string, Float64Array>();
  /** The slot the next sample goes to, and how many slots hold one. */
  private next = 0;
  private size = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(options: StatusHistoryOptions) {
    const { intervalSeconds, capacity } = options;
    if (!(intervalSeconds > 0) || !Number.isFinite(intervalSeconds)) {
      throw new RangeError('status history: intervalSeconds must be a positive number');
    }
    if (!Number.isInteger(capacity) || capacity < 2) {
      throw new RangeError('status history: capacity must be a whole number >= 2');
    }
    this.intervalSeconds = intervalSeconds;
    this.capacity = capacity;
    this.read = options.read;
    this.maxSeries = options.maxSeries ?? DEFAULT_MAX_SERIES;
    this.now = options.now ?? monotonicWallClock();
    this.times = new Float64Array(capacity);
  }

  /** Whether the timer of start() is sampling (false before start and after stop). */
  get running(): boolean {
    return this.timer !== null;
  }

  /** Samples held now. */
  get length(): number {
    return this.size;
  }

  /**
   * One sample now, then one every interval until stop(). The timer is unref'd: the history
   * never keeps a relay process alive on its own.
   */
  start(): void {
    if (this.timer) return;
    this.record();
    this.timer = setInterval(() => this.record(), this.intervalSeconds * 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Take one sample now (the timer's tick; tests call it directly with their clock). */
  record(): void {
    const values = this.read();
    const slot = this.next;
    // Milliseconds are plenty, and keep `since` short when the page sends a time back.
    this.times[slot] = Math.round(this.now() * 1000) / 1000;
    for (const [name, value] of Object.entries(values)) {
      const column = this.column(name);
      if (column) column[slot] = Number.isFinite(value) ? value : Number.NaN;
    }
    // A series the read left out this time has no value in this slot.
    for (const [name, column] of this.columns) {
      if (!Object.hasOwn(values, name)) column[slot] = Number.NaN;
    }
    this.next = (slot + 1) % this.capacity;
    this.size = Math.min(this.size + 1, this.capacity);
  }

  /**
   * The samples taken after `since` (unix seconds; all without it), oldest first, thinned to
   * every k-th one counting back from the newest when there are more than `maxSamples`.
   */
  since(since = Number.NEGATIVE_INFINITY, maxSamples = this.capacity): StatusHistoryAnswer {
    const slots: number[] = [];
    for (let i = 0; i < this.size; i++) {
      const slot = (this.next - this.size + i + this.capacity) % this.capacity;
      if ((this.times[slot] ?? 0) > since) slots.push(slot);
    }
    const step = Math.max(1, Math.ceil(slots.length / Math.max(1, maxSamples)));
    const picked = slots.filter((_slot, i) => (slots.length - 1 - i) % step === 0);
    const series: Record<string, (number | null)[]> = {};
    for (const [name, column] of this.columns) {
      series[name] = picked.map((slot) => {
        const value = column[slot] ?? Number.NaN;
        return Number.isNaN(value) ? null : value;
      });
    }
    return {
      intervalSeconds: this.intervalSeconds,
      capacity: this.capacity,
      times: picked.map((slot) => this.times[slot] ?? 0),
      series,
    };
  }

  /** The series' column, made on first use with no value in the slots before. */
  private column(name: string): Float64Array | null {
    const existing = this.columns.get(name);
    if (existing) return existing;
    if (this.columns.size >= this.maxSeries) return null;
    const column = new Float64Array(this.capacity).fill(Number.NaN);
    this.columns.set(name, column);
    return column;
  }
}

/** Unix seconds that only move forward: the wall clock once, then the monotonic clock. */
function monotonicWallClock(): () => number {
  const wall = Date.now() / 1000;
  const start = performance.now();
  return () => wall + (performance.now() - start) / 1000;
}

/**
 * The numbers of a status worth a history, by series name: gauges as they are (hash rate,
 * clients, open streams) and counters as totals. A label follows a colon
 * ("shares.rejected:stale", "qos.bytesSent:free"), so a class name may hold any character.
 */
export function historySample(status: RelayStatus): Record<string, number> {
  const sample: Record<string, number> = {
    hashrate: status.hashrate.hps,
    clients: status.clients,
    'shares.accepted': status.shares.accepted,
    'forwarded.accepted': status.forwarded.accepted,
    'forwarded.rejected': status.forwarded.rejected,
    'forwarded.stale': status.forwarded.stale,
    'blocks.found': status.blocks.found,
    'blocks.accepted': status.blocks.accepted,
    'blocks.rejected': status.blocks.rejected,
    'blocks.stale': status.blocks.stale,
  };
  const labelled = (name: string, values: Readonly<Record<string, number>>): void => {
    for (const [label, value] of Object.entries(values)) sample[`${name}:${label}`] = value;
  };
  labelled('shares.rejected', status.shares.rejected);
  if (status.tickets) {
    sample['tickets.issued'] = status.tickets.issued;
    sample['tickets.redeemed'] = status.tickets.redeemed;
    labelled('tickets.refused', status.tickets.refused);
  }
  for (const c of status.qos?.classes ?? []) sample[`qos.bytesSent:${c.name}`] = c.bytesSent;
  if (status.tunnel) {
    labelled('tunnel.streams', status.tunnel.streams);
    sample['tunnel.opened'] = status.tunnel.opened;
  }
  if (status.stratum) {
    sample['stratum.clients'] = status.stratum.clients;
    labelled('stratum.dropped', status.stratum.dropped);
  }
  if (status.load) {
    labelled('load.overloaded', status.load.overloaded);
    labelled('load.circuits', status.load.circuits);
  }
  return sample;
}
