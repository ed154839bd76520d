import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { ClassStats } from '../qos/htb.js';
import type { TicketStatus } from './http-api.js';
import { SHARE_REJECT_REASONS, type RelayStats, type RelayStatsSnapshot } from './stats.js';

/**
 * Prometheus exposition of RelayStats. Every value is read from the stats at scrape time
 * (collect callbacks), so /metrics and /v1/status can never disagree. The registry is our
 * own, not prom-client's global one, so two relays (or many tests) in one process do not
 * collide. Labels are fixed enumerations or configured HTB class names; none identifies a
 * client.
 */

export const METRICS_PREFIX = 'powbridge_';

export interface RelayMetricsOptions {
  /**
   * Node process metrics (CPU, memory, event-loop lag, GC) under the same prefix. They start
   * process-wide observers that are never stopped, so tests that build many registries may
   * turn them off.
   */
  processMetrics?: boolean;
  /**
   * Per-class state of the tunnel shaper (HtbShaper.stats()), read at scrape time. Without it
   * no powbridge_qos_* metric is registered.
   */
  qos?: () => ClassStats[];
}

export class RelayMetrics {
  readonly registry = new Registry();

  constructor(
    private readonly stats: RelayStats,
    options: RelayMetricsOptions = {},
  ) {
    const registers = [this.registry];
    const read = (): RelayStatsSnapshot => this.stats.snapshot();

    new Counter({
      name: `${METRICS_PREFIX}shares_total`,
      help: 'Shares checked from clients, by result and (rejected only) reason.',
      labelNames: ['result', 'reason'] as const,
      registers,
      collect() {
        const { shares } = read();
        this.reset();
        this.inc({ result: 'accepted' }, shares.accepted);
        for (const reason of SHARE_REJECT_REASONS) {
          this.inc({ result: 'rejected', reason }, shares.rejected[reason]);
        }
      },
    });
    new Counter({
      name: `${METRICS_PREFIX}share_difficulty_total`,
      help: 'Sum of the difficulty of accepted shares (rate() of it times hashes per difficulty is a hash rate).',
      registers,
      collect() {
        this.reset();
        this.inc(read().shares.acceptedDifficulty);
      },
    });
    new Counter({
      name: `${METRICS_PREFIX}forwarded_total`,
      help: 'Shares forwarded upstream, by the answer of the pool or node.',
      labelNames: ['result'] as const,
      registers,
      collect() {
        const { forwarded } = read();
        this.reset();
        this.inc({ result: 'accepted' }, forwarded.accepted);
        this.inc({ result: 'rejected' }, forwarded.rejected);
      },
    });
    new Counter({
      name: `${METRICS_PREFIX}blocks_total`,
      help: 'Shares that met the network target, by outcome; the sum is the blocks found.',
      labelNames: ['result'] as const,
      registers,
      collect() {
        const { blocks } = read();
        this.reset();
        this.inc({ result: 'accepted' }, blocks.accepted);
        this.inc({ result: 'rejected' }, blocks.rejected);
        // Met the network target but not the upstream difficulty, so it was never submitted.
        this.inc({ result: 'unsubmitted' }, blocks.found - blocks.accepted - blocks.rejected);
      },
    });
    new Counter({
      name: `${METRICS_PREFIX}jobs_total`,
      help: 'Jobs sent to clients.',
      registers,
      collect() {
        this.reset();
        this.inc(read().jobs);
      },
    });
    new Gauge({
      name: `${METRICS_PREFIX}clients`,
      help: 'Registered clients now.',
      registers,
      collect() {
        this.set(read().clients);
      },
    });
    new Gauge({
      name: `${METRICS_PREFIX}hashrate_hps`,
      help: 'Hash rate estimated from accepted share difficulty over the stats window (H/s).',
      registers,
      collect() {
        this.set(read().hashrate.hps);
      },
    });
    new Gauge({
      name: `${METRICS_PREFIX}upstream_up`,
      help: '1 while the pool or node gives work, 0 otherwise.',
      registers,
      collect() {
        this.set(read().upstream.state === 'live' ? 1 : 0);
      },
    });
    new Gauge({
      name: `${METRICS_PREFIX}upstream_difficulty`,
      help: 'Share difficulty the upstream asks for (0 before its first terms).',
      registers,
      collect() {
        this.set(read().upstream.difficulty ?? 0);
      },
    });

    if (options.qos) registerQosMetrics(options.qos, registers);

    if (options.processMetrics ?? true) {
      collectDefaultMetrics({ register: this.registry, prefix: METRICS_PREFIX });
    }
  }

  /**
   * Ticket counters (the ticket desk opens after the metrics exist, so it registers late):
   * issued, redeemed, and redemptions refused by reason.
   */
  watchTickets(read: () => TicketStatus): void {
    new Counter({
      name: `${METRICS_PREFIX}tickets_total`,
      help: 'Tickets issued and redeemed here, and redemptions refused by reason.',
      labelNames: ['event', 'reason'] as const,
      registers: [this.registry],
      collect() {
        const status = read();
        this.reset();
        this.inc({ event: 'issued' }, status.issued);
        this.inc({ event: 'redeemed' }, status.redeemed);
        for (const [reason, count] of Object.entries(status.refused)) {
          this.inc({ event: 'refused', reason }, count);
        }
      },
    });
  }

  /** Value of the Content-Type header for text(). */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** The Prometheus text exposition (format 0.0.4). */
  text(): Promise<string> {
    return this.registry.metrics();
  }
}

/** powbridge_qos_*: one series per HTB class (parents too), read from the shaper per scrape. */
function registerQosMetrics(read: () => ClassStats[], registers: Registry[]): void {
  new Gauge({
    name: `${METRICS_PREFIX}qos_class_rate_bps`,
    help: 'Send rate of each HTB class, exponentially weighted (bits/s).',
    labelNames: ['class'] as const,
    registers,
    collect() {
      this.reset();
      for (const c of read()) this.set({ class: c.name }, c.rate * 8);
    },
  });
  new Counter({
    name: `${METRICS_PREFIX}qos_class_bytes_total`,
    help: 'Bytes through each HTB class: sent, sent above its rate on a lender (borrowed), and lent to borrowing descendants.',
    labelNames: ['class', 'kind'] as const,
    registers,
    collect() {
      this.reset();
      for (const c of read()) {
        this.inc({ class: c.name, kind: 'sent' }, c.bytesSent);
        this.inc({ class: c.name, kind: 'borrowed' }, c.bytesBorrowed);
        this.inc({ class: c.name, kind: 'lent' }, c.bytesLent);
      }
    },
  });
  new Gauge({
    name: `${METRICS_PREFIX}qos_class_tokens_seconds`,
    help: 'Bucket credit of each HTB class in seconds of sending at rate (tokens) or ceil (ctokens); negative is debt.',
    labelNames: ['class', 'bucket'] as const,
    registers,
    collect() {
      this.reset();
      for (const c of read()) {
        this.set({ class: c.name, bucket: 'tokens' }, c.tokens);
        this.set({ class: c.name, bucket: 'ctokens' }, c.ctokens);
      }
    },
  });
  new Gauge({
    name: `${METRICS_PREFIX}qos_class_queued_bytes`,
    help: 'Bytes waiting in the leaf queues under each HTB class.',
    labelNames: ['class'] as const,
    registers,
    collect() {
      this.reset();
      for (const c of read()) this.set({ class: c.name }, c.queuedBytes);
    },
  });
}
