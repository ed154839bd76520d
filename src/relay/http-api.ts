import fastify, { type FastifyInstance } from 'fastify';
import { type Logger, silentLogger } from '../log.js';
import { MODE_NAMES } from '../qos/htb-bucket.js';
import type { ClassStats } from '../qos/htb.js';
import type { SourceState } from '../sources/work-source.js';
import type { Algorithm } from '../work/algorithm.js';
import { CIRCUIT_PATH } from './circuit-connector.js';
import type { RelayMetrics } from './metrics.js';
import { SHARE_REJECT_REASONS, type RelayStats, type ShareRejectReason } from './stats.js';
import type { Stratifier } from './stratifier.js';

/**
 * The relay's HTTP face: status, Prometheus metrics, probes and the descriptor. Connectors
 * (circuit, later tunnel) attach to `app.server` for their WebSocket upgrades, so one port
 * serves everything. Fastify's own logger stays off: its request logs carry the peer
 * address, and a relay must not record who talks to it. We log errors through pino without
 * any request details.
 */

export interface HttpApiOptions {
  stratifier: Pick<Stratifier, 'upstreamState'>;
  stats: RelayStats;
  metrics: RelayMetrics;
  /** Built per request so key rotation (tickets) shows without a restart. */
  descriptor: () => object;
  /**
   * Name of the upstream in use (pool URL without credentials, or node URL). The stratifier
   * does not expose its source's status, so the caller passes it; null when unknown.
   */
  upstreamUrl?: () => string | null;
  /**
   * Per-class state of the tunnel shaper (HtbShaper.stats()), read per request. Without it
   * the status has no `qos` section.
   */
  qos?: () => ClassStats[];
  logger?: Logger;
}

/** One HTB class in the status: counters, buckets and the rate estimate. */
export interface QosClassStatus {
  name: string;
  mode: ClassStats['mode'];
  /** Send rate estimate in bits per second (the HTB keeps bytes per second). */
  rateBps: number;
  bytesSent: number;
  bytesBorrowed: number;
  bytesLent: number;
  /** Bucket credit in seconds of sending at rate (tokens) and at ceil (ctokens); < 0 is debt. */
  tokens: number;
  ctokens: number;
  queuedBytes: number;
}

export interface RelayStatus {
  upstream: {
    state: SourceState;
    url: string | null;
    difficulty: number | null;
    extranonce2Size: number | null;
    /** Unix seconds since the upstream has been in this state. */
    since: number;
  };
  clients: number;
  hashrate: { hps: number; windowSeconds: number };
  shares: { accepted: number; rejected: Record<ShareRejectReason, number> };
  forwarded: { accepted: number; rejected: number; lastRejectReason: string | null };
  blocks: { found: number; accepted: number; rejected: number };
  jobs: number;
  /** Present when the relay shapes tunnels; classes parents before children. */
  qos?: { classes: QosClassStatus[] };
}

/** The status view of the shaper's class stats (bytes/s → bits/s, internal fields dropped). */
export function qosStatus(classes: readonly ClassStats[]): { classes: QosClassStatus[] } {
  return {
    classes: classes.map((c) => ({
      name: c.name,
      mode: c.mode,
      rateBps: c.rate * 8,
      bytesSent: c.bytesSent,
      bytesBorrowed: c.bytesBorrowed,
      bytesLent: c.bytesLent,
      tokens: c.tokens,
      ctokens: c.ctokens,
      queuedBytes: c.queuedBytes,
    })),
  };
}

/** The descriptor until the ticket issuer adds keys and signs it (DESIGN §6.4). */
export interface RelayDescriptor {
  /** Format version of this document (not the software's: no need to tell clients that). */
  version: 1;
  algorithm: Algorithm;
  endpoints: { circuit: string };
  difficulty: { initial: number; ticketDifficulty: number; vardiffTargetSeconds: number };
}

export function relayDescriptor(terms: {
  algorithm: Algorithm;
  initialDifficulty: number;
  ticketDifficulty: number;
  vardiffTargetSeconds: number;
}): RelayDescriptor {
  return {
    version: 1,
    algorithm: terms.algorithm,
    endpoints: { circuit: CIRCUIT_PATH },
    difficulty: {
      initial: terms.initialDifficulty,
      ticketDifficulty: terms.ticketDifficulty,
      vardiffTargetSeconds: terms.vardiffTargetSeconds,
    },
  };
}

const count = { type: 'integer', minimum: 0 } as const;
const nullableNumber = { type: ['number', 'null'] } as const;

function closedObject(properties: Record<string, object>, optional: string[] = []): object {
  return {
    type: 'object',
    additionalProperties: false,
    required: Object.keys(properties).filter((key) => !optional.includes(key)),
    properties,
  };
}

const qosClassSchema = closedObject({
  name: { type: 'string' },
  mode: { type: 'string', enum: [...MODE_NAMES] },
  rateBps: { type: 'number' },
  bytesSent: count,
  bytesBorrowed: count,
  bytesLent: count,
  tokens: { type: 'number' },
  ctokens: { type: 'number' },
  queuedBytes: count,
});

/** Response schema: fast-json-stringify serialises with it and drops anything not listed. */
const statusSchema = closedObject(
  {
    upstream: closedObject({
      state: { type: 'string', enum: ['connecting', 'live', 'down'] },
      url: { type: ['string', 'null'] },
      difficulty: nullableNumber,
      extranonce2Size: { type: ['integer', 'null'] },
      since: { type: 'number' },
    }),
    clients: count,
    hashrate: closedObject({ hps: { type: 'number' }, windowSeconds: { type: 'number' } }),
    shares: closedObject({
      accepted: count,
      rejected: closedObject(Object.fromEntries(SHARE_REJECT_REASONS.map((r) => [r, count]))),
    }),
    forwarded: closedObject({
      accepted: count,
      rejected: count,
      lastRejectReason: { type: ['string', 'null'] },
    }),
    blocks: closedObject({ found: count, accepted: count, rejected: count }),
    jobs: count,
    qos: closedObject({ classes: { type: 'array', items: qosClassSchema } }),
  },
  ['qos'],
);

const upstreamState = { type: 'string', enum: ['connecting', 'live', 'down'] } as const;
const healthSchema = closedObject({ ok: { type: 'boolean' }, upstream: upstreamState });
const readySchema = closedObject({ ready: { type: 'boolean' }, upstream: upstreamState });

export function createHttpApi(options: HttpApiOptions): FastifyInstance {
  const { stratifier, stats, metrics, descriptor } = options;
  const upstreamUrl = options.upstreamUrl ?? (() => null);
  const qos = options.qos;
  const log = options.logger ?? silentLogger;
  // trustProxy off: X-Forwarded-For is never read, so no address reaches a handler.
  const app = fastify({ logger: false, trustProxy: false, return503OnClosing: true });

  app.get('/v1/status', { schema: { response: { 200: statusSchema } } }, (): RelayStatus => {
    const snapshot = stats.snapshot();
    return {
      upstream: { ...snapshot.upstream, url: upstreamUrl() },
      clients: snapshot.clients,
      hashrate: snapshot.hashrate,
      shares: { accepted: snapshot.shares.accepted, rejected: snapshot.shares.rejected },
      forwarded: snapshot.forwarded,
      blocks: snapshot.blocks,
      jobs: snapshot.jobs,
      ...(qos ? { qos: qosStatus(qos()) } : {}),
    };
  });

  app.get('/metrics', async (_request, reply) => {
    const text = await metrics.text();
    return reply.type(metrics.contentType).send(text);
  });

  // Liveness answers "is this process serving?", nothing more. The upstream going away is
  // not cured by a restart (the pool is still away) and a restart would drop every client
  // circuit: an orchestrator must not kill the relay for it. Readiness carries that signal.
  app.get('/healthz', { schema: { response: { 200: healthSchema } } }, () => ({
    ok: true,
    upstream: stratifier.upstreamState,
  }));

  app.get(
    '/readyz',
    { schema: { response: { 200: readySchema, 503: readySchema } } },
    (_request, reply) => {
      const upstream = stratifier.upstreamState;
      const ready = upstream === 'live';
      return reply.code(ready ? 200 : 503).send({ ready, upstream });
    },
  );

  // No response schema: once signed, the descriptor must go out exactly as it was built.
  app.get('/v1/descriptor', () => descriptor());

  app.setNotFoundHandler((_request, reply) => reply.code(404).send({ error: 'not found' }));

  app.setErrorHandler((error, request, reply) => {
    const status = clientErrorStatus(error);
    if (status !== null) return reply.code(status).send({ error: errorMessage(error) });
    // Route pattern only: the raw URL could carry anything a client chose to put there.
    log.error({ err: errorMessage(error), route: request.routeOptions.url }, 'http api error');
    return reply.code(500).send({ error: 'internal error' });
  });

  return app;
}

/** 4xx from fastify itself (e.g. a malformed request), else null. */
function clientErrorStatus(error: unknown): number | null {
  if (typeof error !== 'object' || error === null || !('statusCode' in error)) return null;
  const { statusCode } = error;
  return typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500
    ? statusCode
    : null;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
