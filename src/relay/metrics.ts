import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { ClassStats } from '../qos/htb.js';
import type { TicketStatus } from './http-api.js';
import type { LoadStatus } from './status-schema.js';
import { SHARE_REJECT_REASONS, type RelayStats, type RelayStatsSnapshot } from './stats.js';
import { STRATUM_DROP_REASONS } from './stratum-miner-limits.js';

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
    new Gauge({
      name: `${METRICS_PREFIX}tickets_issued_today`,
      help: 'Tickets of today (UTC) issued by this instance since start (scope="instance") and by the whole family as kept in storage (scope="family").',
      labelNames: ['scope'] as const,
      registers: [this.registry],
      collect() {
        const today = read().issuedToday;
        this.reset();
        if (!today) return;
        this.set({ scope: 'instance' }, today.here);
        if (today.family !== null) this.set({ scope: 'family' }, today.family);
      },
    });
  }

  /**
   * What the relay shed or refused for load (the `load` status section), registered by the
   * relay once its circuit connector exists: requests answered 38, circuits refused at the
   * unregistered cap or closed at the register deadline, unregistered circuits now.
   */
  watchLoad(read: () => LoadStatus): void {
    const registers = [this.registry];
    new Counter({
      name: `${METRICS_PREFIX}overloaded_total`,
      help: 'Requests answered 38 (relay overloaded): redemptions over the verification budget or with the verification queue full, shares with the share-check queue full.',
      labelNames: ['request'] as const,
      registers,
      collect() {
        const { overloaded } = read();
        this.reset();
        this.inc({ request: 'redeem' }, overloaded.redeem);
        this.inc({ request: 'share' }, overloaded.share);
      },
    });
    new Counter({
      name: `${METRICS_PREFIX}circuits_refused_total`,
      help: 'Circuits refused for load: upgrades answered 503 at limits.maxUnregistered (unregistered-cap), circuits closed for not registering in time (register-timeout), registrations answered 37 with every place taken (full).',
      labelNames: ['reason'] as const,
      registers,
      collect() {
        const { circuits } = read();
        this.reset();
        this.inc({ reason: 'unregistered-cap' }, circuits.refusedUnregistered);
        this.inc({ reason: 'register-timeout' }, circuits.registerTimeouts);
        this.inc({ reason: 'full' }, circuits.refusedFull);
      },
    });
    new Gauge({
      name: `${METRICS_PREFIX}circuits_unregistered`,
      help: 'Circuits open now without a registration (redeem-only circuits among them).',
      registers,
      collect() {
        this.set(read().circuits.unregistered);
      },
    });
    new Gauge({
      name: `${METRICS_PREFIX}circuits_waiting`,
      help: 'Handshakes and unregistered circuits waiting now for their turn of limits.maxUnregisteredRequestsPerSecond.',
      registers,
      collect() {
        this.set(read().circuits.waiting);
      },
    });
  }

  /**
   * The Stratum port's miners and drops by reason (registered when the relay has the port:
   * RelayStats.attachStratum), as in the `stratum` section of /v1/status.
   */
  watchStratum(): void {
    const read = () => this.stats.snapshot().stratum;
    const registers = [this.registry];
    new Gauge({
      name: `${METRICS_PREFIX}stratum_clients`,
      help: 'Standard miners subscribed on the Stratum port now (limits.maxStratumClients).',
      registers,
      collect() {
        this.set(read()?.clients ?? 0);
      },
    });
    new Counter({
      name: `${METRICS_PREFIX}stratum_dropped_total`,
      help: 'Stratum port connections the relay dropped or refused, by reason.',
      labelNames: ['reason'] as const,
      registers,
      collect() {
        this.reset();
        const dropped = read()?.dropped;
        if (!dropped) return;
        for (const reason of STRATUM_DROP_REASONS) this.inc({ reason }, dropped[reason]);
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
