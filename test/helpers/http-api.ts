import type { FastifyInstance } from 'fastify';
import { createHttpApi, type HttpApiOptions, relayDescriptor } from '../../src/relay/http-api.js';
import { RelayMetrics } from '../../src/relay/metrics.js';
import { RelayStats } from '../../src/relay/stats.js';

/**
 * The relay's HTTP API alone, without a relay: a connecting upstream, stats on a frozen
 * clock and a fixed unsigned descriptor, with `options` over these defaults.
 */
export function testHttpApi(
  options: Partial<HttpApiOptions> & { now?: number } = {},
): FastifyInstance {
  const { now = 100, ...overrides } = options;
  const stats = overrides.stats ?? new RelayStats({ now: () => now });
  return createHttpApi({
    stratifier: { upstreamState: 'connecting' },
    stats,
    metrics:
      overrides.metrics ??
      new RelayMetrics(stats, {
        processMetrics: false,
        ...(overrides.qos ? { qos: overrides.qos } : {}),
      }),
    descriptor: () =>
      relayDescriptor({
        algorithm: 'sha256d',
        initialDifficulty: 1,
        ticketDifficulty: 1,
        vardiffTargetSeconds: 15,
      }),
    ...overrides,
  });
}
