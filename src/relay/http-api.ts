import fastify, { type FastifyInstance } from 'fastify';
import { z } from 'zod';
import { type Logger, silentLogger } from '../log.js';
import type { ClassStats } from '../qos/htb.js';
import type { RedeemCounts } from '../tickets/redeemer.js';
import type { Algorithm } from '../work/algorithm.js';
import { CIRCUIT_PATH } from './circuit-connector.js';
import { registerDashboard } from './dashboard/routes.js';
import { registerMinePage } from './mine-page.js';
import type { RelayMetrics } from './metrics.js';
import type { RelayStats } from './stats.js';
import type { StatusHistory } from './status-history.js';
import {
  type LoadStatus,
  type QosClassStatus,
  type RelayInfo,
  type RelayStatus,
  relayStatusSchema,
  statusHistoryQuerySchema,
  statusHistorySchema,
  type TicketStatus,
  type TunnelStatus,
} from './status-schema.js';
import type { Stratifier } from './stratifier.js';

/**
 * The relay's HTTP face: status, Prometheus metrics, probes, the descriptor and the operator's
 * dashboard (at `/`, see dashboard/routes.ts). Connectors (circuit, later tunnel) attach to
 * `app.server` for their WebSocket upgrades, so one port serves everything. Fastify's own
 * logger stays off: its request logs carry the peer address, and a relay must not record who
 * talks to it. We log errors through pino without any request details.
 */

/** What the built-in sections of /v1/status are read from (the relay's history reads them too). */
export interface StatusParts {
  stats: RelayStats;
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
  /** What the relay shed or refused for load, read per request. Without it no `load` section. */
  load?: () => LoadStatus;
  /** Version and uptime, read per request. Without it no `relay` section. */
  relayInfo?: () => RelayInfo;
  /** Open tunnel streams per class, read per request. Without it no `tunnel` section. */
  tunnel?: () => TunnelStatus;
}

export interface HttpApiOptions extends StatusParts {
  stratifier: Pick<Stratifier, 'upstreamState'>;
  metrics: RelayMetrics;
  /** Built per request so key rotation (tickets) shows without a restart. */
  descriptor: () => object;
  /** Samples of the status served at /v1/status/history; without it that path is 404. */
  history?: StatusHistory;
  /**
   * Further status sections by name (e.g. `peers`), each read (and awaited) per request and merged into
   * /v1/status as returned (serialised as JSON.stringify would: their owners shape them, and
   * status-schema.ts describes the known ones). Names are lower camelCase and must not clash
   * with a built-in field.
   */
  sections?: Record<string, () => unknown>;
  logger?: Logger;
}

export type { QosClassStatus, RelayStatus, TicketRefusal, TicketStatus } from './status-schema.js';

export function ticketStatus(issued: number, counts: Readonly<RedeemCounts>): TicketStatus {
  const { redeemed, ...refused } = counts;
  return { issued, redeemed, refused };
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

/** The descriptor until the ticket issuer adds keys and signs it (docs/design.md §6.4). */
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

/** A JSON Schema object for fastify's response serialiser. */
interface ResponseSchema {
  properties?: Record<string, unknown>;
  [keyword: string]: unknown;
}

/**
 * fast-json-stringify serialises with the JSON Schema of a zod schema and drops anything it
 * does not list, so the answer can never carry more than its type says.
 */
function responseSchema(schema: z.ZodType): ResponseSchema {
  const { $schema: _dialect, ...json } = z.toJSONSchema(schema, {
    target: 'draft-7',
    io: 'output',
  });
  return json;
}

const statusSchema = responseSchema(relayStatusSchema);

/** The status schema plus extra sections, each any JSON value (written as JSON.stringify would). */
function statusSchemaWith(sectionNames: readonly string[]): ResponseSchema {
  const extra = Object.fromEntries(sectionNames.map((name) => [name, {}]));
  return { ...statusSchema, properties: { ...statusSchema.properties, ...extra } };
}

const SECTION_NAME = /^[a-z][A-Za-z0-9]{0,31}$/;

/** The caller's extra status sections, checked once: a bad name is a programming error. */
function checkedSections(sections: Record<string, () => unknown>): [string, () => unknown][] {
  return Object.entries(sections).map(([name, read]) => {
    if (!SECTION_NAME.test(name) || Object.hasOwn(relayStatusSchema.shape, name)) {
      throw new Error(`status section name "${name}" is invalid or taken by a built-in field`);
    }
    return [name, read];
  });
}

/**
 * Reads the extra sections, awaiting those that answer with a promise (the peer ledger may be
 * a database away); one that throws or rejects shows as null so the rest still serves.
 */
async function readSections(
  sections: readonly [string, () => unknown][],
  log: Logger,
): Promise<Record<string, unknown>> {
  const values: Record<string, unknown> = {};
  for (const [name, read] of sections) {
    try {
      values[name] = await read();
    } catch (err) {
      log.error({ err: errorMessage(err), section: name }, 'status section failed');
      values[name] = null;
    }
  }
  return values;
}

/** The built-in sections of /v1/status, read from their parts at each call. */
export function statusReader(parts: StatusParts): () => RelayStatus {
  const { stats, qos, tickets, load, relayInfo, tunnel } = parts;
  const upstreamUrl = parts.upstreamUrl ?? (() => null);
  return () => {
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
      ...(load ? { load: load() } : {}),
      ...(relayInfo ? { relay: relayInfo() } : {}),
      ...(tunnel ? { tunnel: tunnel() } : {}),
      ...(snapshot.stratum ? { stratum: snapshot.stratum } : {}),
    };
  };
}

const historySchema = responseSchema(statusHistorySchema);
const errorSchema = responseSchema(z.strictObject({ error: z.string() }));

const upstreamState = relayStatusSchema.shape.upstream.shape.state;
const healthSchema = responseSchema(z.strictObject({ ok: z.boolean(), upstream: upstreamState }));
const readySchema = responseSchema(z.strictObject({ ready: z.boolean(), upstream: upstreamState }));

export function createHttpApi(options: HttpApiOptions): FastifyInstance {
  const { stratifier, metrics, descriptor, history } = options;
  const readStatus = statusReader(options);
  const sections = checkedSections(options.sections ?? {});
  const log = options.logger ?? silentLogger;
  // trustProxy off: X-Forwarded-For is never read, so no address reaches a handler.
  const app = fastify({ logger: false, trustProxy: false, return503OnClosing: true });

  const schema = statusSchemaWith(sections.map(([name]) => name));
  app.get(
    '/v1/status',
    { schema: { response: { 200: schema } } },
    async (): Promise<RelayStatus> => ({
      ...readStatus(),
      ...(await readSections(sections, log)),
    }),
  );

  if (history) {
    // The query is parsed here, not by fastify: its errors then name the parameter.
    app.get(
      '/v1/status/history',
      { schema: { response: { 200: historySchema, 400: errorSchema } } },
      (request, reply) => {
        const query = statusHistoryQuerySchema.safeParse(request.query);
        if (!query.success) {
          const issue = query.error.issues[0];
          const message =
            issue?.code === 'unrecognized_keys'
              ? `unknown parameter ${issue.keys.join(', ')}: expected since, maxSamples`
              : (issue?.message ?? 'bad query');
          return reply.code(400).send({ error: message });
        }
        return history.since(query.data.since, query.data.maxSamples);
      },
    );
  }

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
  registerMinePage(app);

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
