import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HtbShaper } from '../../src/qos/htb-shaper.js';
import { RelayMetrics } from '../../src/relay/metrics.js';
import type { Relay } from '../../src/relay/relay.js';
import { RelayStats } from '../../src/relay/stats.js';
import { relayStatusSchema } from '../../src/relay/status-schema.js';
import { testHttpApi } from '../helpers/http-api.js';
import { metricTypes, parseMetrics } from '../helpers/metrics-text.js';
import { startTestRelay } from '../helpers/test-relay.js';

/** Only the powbridge_qos_* samples. */
function qosSamples(text: string): Record<string, number> {
  return Object.fromEntries(
    [...parseMetrics(text)].filter(([key]) => key.startsWith('powbridge_qos_')),
  );
}

const close = (value: number): unknown => expect.closeTo(value, 9);

/**
 * The default tree at 1 Mbit/s, in bytes/s (rate/ceil) and bytes (burst/cburst, tc's
 * rate/1000 + 1600): root 125000/125000 1725/1725; free 25000/50000 1625/1650; paid
 * 100000/125000 1700/1725; group1 50000/125000 1650/1725; group4 18750/125000 1619/1725.
 */
describe('qos in /v1/status and /metrics (real HtbShaper, frozen clock)', () => {
  const NOW = 100;
  let shaper: HtbShaper;
  let app: FastifyInstance;
  let metrics: RelayMetrics;

  beforeEach(() => {
    shaper = new HtbShaper({ linkBitsPerSecond: 1e6, clock: () => NOW });
    const stats = new RelayStats({ now: () => NOW });
    metrics = new RelayMetrics(stats, { processMetrics: false, qos: () => shaper.stats() });
    app = testHttpApi({ stats, metrics, qos: () => shaper.stats() });
  });

  afterEach(async () => {
    shaper.close();
    await app.close();
  });

  /**
   * free 1000 B at its rate; group1 1690 B at its rate (tokens into debt, ctokens still ≥ 0);
   * group1 100 B borrowed from paid (paid lends it); group1 500 B queued (its ceil is spent).
   */
  function traffic(): void {
    expect(shaper.request('free', 1000)).toBeUndefined();
    expect(shaper.request('group1', 1690)).toBeUndefined();
    expect(shaper.request('group1', 100)).toBeUndefined();
    expect(shaper.request('group1', 500)).toBeInstanceOf(Promise);
  }

  it('reports every class with its counters, buckets, rate and queue', async () => {
    traffic();
    const response = await app.inject({ method: 'GET', url: '/v1/status' });
    expect(response.statusCode).toBe(200);
    const body = relayStatusSchema.parse(response.json());
    expect(body.qos).toEqual({
      classes: [
        {
          name: 'root',
          mode: 'CANT_SEND',
          rateBps: 2790 * 8,
          bytesSent: 2790,
          bytesBorrowed: 0,
          bytesLent: 0,
          tokens: close((1725 - 2790) / 125000),
          ctokens: close((1725 - 2790) / 125000),
          queuedBytes: 500,
        },
        {
          name: 'free',
          mode: 'CAN_SEND',
          rateBps: 1000 * 8,
          bytesSent: 1000,
          bytesBorrowed: 0,
          bytesLent: 0,
          tokens: close((1625 - 1000) / 25000),
          ctokens: close((1650 - 1000) / 50000),
          queuedBytes: 0,
        },
        {
          name: 'paid',
          mode: 'CANT_SEND',
          rateBps: 1790 * 8,
          bytesSent: 1790,
          bytesBorrowed: 0,
          bytesLent: 100,
          tokens: close((1700 - 1790) / 100000),
          ctokens: close((1725 - 1790) / 125000),
          queuedBytes: 500,
        },
        {
          name: 'group1',
          mode: 'CANT_SEND',
          rateBps: 1790 * 8,
          bytesSent: 1790,
          bytesBorrowed: 100,
          bytesLent: 0,
          // The borrowed 100 bytes were paid from paid's tokens, not group1's.
          tokens: close((1650 - 1690) / 50000),
          ctokens: close((1725 - 1790) / 125000),
          queuedBytes: 500,
        },
        {
          name: 'group4',
          mode: 'CAN_SEND',
          rateBps: 0,
          bytesSent: 0,
          bytesBorrowed: 0,
          bytesLent: 0,
          tokens: close(1619 / 18750),
          ctokens: close(1725 / 125000),
          queuedBytes: 0,
        },
      ],
    });
  });

  it('exposes the same values as Prometheus series', async () => {
    traffic();
    const response = await app.inject({ method: 'GET', url: '/metrics' });
    expect(response.statusCode).toBe(200);
    const types = metricTypes(response.body);
    expect(types.get('powbridge_qos_class_rate_bps')).toBe('gauge');
    expect(types.get('powbridge_qos_class_bytes_total')).toBe('counter');
    expect(types.get('powbridge_qos_class_tokens_seconds')).toBe('gauge');
    expect(types.get('powbridge_qos_class_queued_bytes')).toBe('gauge');

    const expected: Record<string, unknown> = {};
    const classes = {
      root: { rate: 2790, sent: 2790, borrowed: 0, lent: 0, queued: 500 },
      free: { rate: 1000, sent: 1000, borrowed: 0, lent: 0, queued: 0 },
      paid: { rate: 1790, sent: 1790, borrowed: 0, lent: 100, queued: 500 },
      group1: { rate: 1790, sent: 1790, borrowed: 100, lent: 0, queued: 500 },
      group4: { rate: 0, sent: 0, borrowed: 0, lent: 0, queued: 0 },
    };
    const buckets = {
      root: [(1725 - 2790) / 125000, (1725 - 2790) / 125000],
      free: [(1625 - 1000) / 25000, (1650 - 1000) / 50000],
      paid: [(1700 - 1790) / 100000, (1725 - 1790) / 125000],
      group1: [(1650 - 1690) / 50000, (1725 - 1790) / 125000],
      group4: [1619 / 18750, 1725 / 125000],
    };
    for (const [name, c] of Object.entries(classes)) {
      expected[`powbridge_qos_class_rate_bps{class="${name}"}`] = c.rate * 8;
      for (const kind of ['sent', 'borrowed', 'lent'] as const) {
        expected[`powbridge_qos_class_bytes_total{class="${name}",kind="${kind}"}`] = c[kind];
      }
      const [tokens, ctokens] = buckets[name as keyof typeof buckets];
      expected[`powbridge_qos_class_tokens_seconds{class="${name}",bucket="tokens"}`] = close(
        tokens!,
      );
      expected[`powbridge_qos_class_tokens_seconds{class="${name}",bucket="ctokens"}`] = close(
        ctokens!,
      );
      expected[`powbridge_qos_class_queued_bytes{class="${name}"}`] = c.queued;
    }
    expect(qosSamples(response.body)).toEqual(expected);
  });

  it('counters follow the shaper between scrapes', async () => {
    expect(shaper.request('free', 400)).toBeUndefined();
    const first = qosSamples(await metrics.text());
    expect(first['powbridge_qos_class_bytes_total{class="free",kind="sent"}']).toBe(400);
    expect(shaper.request('free', 200)).toBeUndefined();
    const second = qosSamples(await metrics.text());
    expect(second['powbridge_qos_class_bytes_total{class="free",kind="sent"}']).toBe(600);
    expect(second['powbridge_qos_class_bytes_total{class="root",kind="sent"}']).toBe(600);
    expect(second['powbridge_qos_class_rate_bps{class="free"}']).toBe(600 * 8);
  });
});

describe('qos wiring in startRelay', () => {
  let dataDir: string;
  let relay: Relay | null = null;

  afterEach(async () => {
    await relay?.close();
    relay = null;
    await rm(dataDir, { recursive: true, force: true });
  });

  it('serves the shaper classes in /v1/status and /metrics', async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'powbridge-qos-'));
    ({ relay } = await startTestRelay({ dataDir }));
    const status = await relay.app.inject({ method: 'GET', url: '/v1/status' });
    const classes = relayStatusSchema.parse(status.json()).qos?.classes ?? [];
    expect(classes.map((c) => c.name)).toEqual(['root', 'free', 'paid', 'group1', 'group4']);
    expect(classes.every((c) => c.bytesSent === 0)).toBe(true);
    const metricsText = (await relay.app.inject({ method: 'GET', url: '/metrics' })).body;
    const samples = qosSamples(metricsText);
    expect(samples['powbridge_qos_class_bytes_total{class="group4",kind="lent"}']).toBe(0);
    // 10 Mbit/s default link: root's credit is its full burst.
    expect(samples['powbridge_qos_class_tokens_seconds{class="root",bucket="tokens"}']).toBe(
      // The relay's buckets hold 20 ms of rate + one MTU: (1.25e6 B/s × 0.02 + 1600) B.
      (25_000 + 1600) / 1.25e6,
    );
  });
});
