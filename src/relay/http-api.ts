import fastify, { type FastifyInstance } from 'fastify';
import { type Logger, silentLogger } from '../log.js';
import { MODE_NAMES } from '../qos/htb-bucket.js';
import type { ClassStats } from '../qos/htb.js';
import type { SourceState } from '../sources/work-source.js';
import type { RedeemCounts } from '../tickets/redeemer.js';
import type { Algorithm } from '../work/algorithm.js';
import { CIRCUIT_PATH } from './circuit-connector.js';
import { registerDashboard } from './dashboard/routes.js';
import type { RelayMetrics } from './metrics.js';
import { SHARE_REJECT_REASONS, type RelayStats, type ShareRejectReason } from './stats.js';
import type { Stratifier } from './stratifier.js';

/**
 * The relay's HTTP face: status, Prometheus metrics, probes, the descriptor and the operator's
 * dashboard (at `/`, see dashboard/routes.ts). Connectors (circuit, later tunnel) attach to
 * `app.server` for their WebSocket upgrades, so one port serves everything. Fastify's own
 * logger stays off: its request logs carry the peer address, and a relay must not record who
 * talks to it. We log errors through pino without any request details.
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
  /** Ticket counters, read per request (see ticketStatus). Without it no `tickets` section. */
  tickets?: () => TicketStatus;
  /**
   * Further status sections by name (e.g. `peers`), each read per request and merged into
   * /v1/status as returned (no response schema: their owners shape them). Names are lower
   * camelCase and must not clash with a built-in field.
   */
  sections?: Record<string, () => unknown>;
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

/** Why the redeemer refused tickets (RedeemCounts without the successes). */
export type TicketRefusal = Exclude<keyof RedeemCounts, 'redeemed'>;

/** Tickets signed by the issuer and spent at the redeemer since the relay started. */
export interface TicketStatus {
  issued: number;
  redeemed: number;
  refused: Record<TicketRefusal, number>;
}

export function ticketStatus(issued: number, counts: Readonly<RedeemCounts>): TicketStatus {
  const { redeemed, ...refused } = counts;
  return { issued, redeemed, refused };
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
  /** Present when the relay issues tickets. */
  tickets?: TicketStatus;
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

interface ObjectSchema {
  type: 'object';
  additionalProperties: false;
  required: string[];
  properties: Record<string, object>;
}

function closedObject(properties: Record<string, object>, optional: string[] = []): ObjectSchema {
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

const ticketsSchema = closedObject({
  issued: count,
  redeemed: count,
  refused: closedObject({
    malformed: count,
    unknownKey: count,
    wrongDay: count,
    badSignature: count,
    spent: count,
  } satisfies Record<TicketRefusal, object>),
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
    tickets: ticketsSchema,
  },
  ['qos', 'tickets'],
);

/** The status schema plus extra sections, each any JSON value (written as JSON.stringify would). */
function statusSchemaWith(sectionNames: readonly string[]): ObjectSchema {
  const extra = Object.fromEntries(sectionNames.map((name) => [name, {}]));
  return { ...statusSchema, properties: { ...statusSchema.properties, ...extra } };
}

const SECTION_NAME = /^[a-z][A-Za-z0-9]{0,31}$/;

/** The caller's extra status sections, checked once: a bad name is a programming error. */
function checkedSections(sections: Record<string, () => unknown>): [string, () => unknown][] {
  return Object.entries(sections).map(([name, read]) => {
    if (!SECTION_NAME.test(name) || Object.hasOwn(statusSchema.properties, name)) {
      throw new Error(`status section name "${name}" is invalid or taken by a built-in field`);
    }
    return [name, read];
  });
}

/** Reads the extra sections; one that throws shows as null so the rest still serves. */
function readSections(
  sections: readonly [string, () => unknown][],
  log: Logger,
): Record<string, unknown> {
  const values: Record<string, unknown> = {};
  for (const [name, read] of sections) {
    try {
      values[name] = read();
    } catch (err) {
      log.error({ err: errorMessage(err), section: name }, 'status section failed');
      values[name] = null;
    }
  }
  return values;
}

const upstreamState = { type: 'string', enum: ['connecting', 'live', 'down'] } as const;
const healthSchema = closedObject({ ok: { type: 'boolean' }, upstream: upstreamState });
const readySchema = closedObject({ ready: { type: 'boolean' }, upstream: upstreamState });

export function createHttpApi(options: HttpApiOptions): FastifyInstance {
  const { stratifier, stats, metrics, descriptor } = options;
  const upstreamUrl = options.upstreamUrl ?? (() => null);
  const qos = options.qos;
  const tickets = options.tickets;
  const sections = checkedSections(options.sections ?? {});
  const log = options.logger ?? silentLogger;
  // trustProxy off: X-Forwarded-For is never read, so no address reaches a handler.
  const app = fastify({ logger: false, trustProxy: false, return503OnClosing: true });

  const schema = statusSchemaWith(sections.map(([name]) => name));
  app.get('/v1/status', { schema: { response: { 200: schema } } }, (): RelayStatus => {
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
      ...(tickets ? { tickets: tickets() } : {}),
      ...readSections(sections, log),
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

  registerDashboard(app);

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
