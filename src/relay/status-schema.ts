import { z } from 'zod';
import { peerApiStatusSchema } from '../peers/peer-api-guard.js';
import { peerStatusSchema } from '../peers/peer-status.js';
import { MODE_NAMES } from '../qos/htb-bucket.js';
import type { SourceState } from '../sources/work-source.js';
import type { RedeemCounts } from '../tickets/redeemer.js';
import { BLOCK_RESULTS, SHARE_REJECT_REASONS } from './stats.js';
import { STRATUM_DROP_REASONS } from './stratum-miner-limits.js';

/**
 * What GET /v1/status answers, defined once: the TypeScript types are inferred from these
 * schemas, the HTTP API derives its response (serialisation) schema from them, and tests
 * parse the answer with them, so a field added on one side only fails a test.
 */

const count = z.number().int().min(0);

/** Every upstream state a work source has (the status is built from SourceState values). */
const SOURCE_STATES = ['connecting', 'live', 'down'] as const satisfies readonly SourceState[];

/** One HTB class: counters, buckets and the rate estimate. */
export const qosClassStatusSchema = z.strictObject({
  name: z.string(),
  mode: z.enum(MODE_NAMES),
  /** Send rate estimate in bits per second (the HTB keeps bytes per second). */
  rateBps: z.number(),
  bytesSent: count,
  bytesBorrowed: count,
  bytesLent: count,
  /** Bucket credit in seconds of sending at rate (tokens) and at ceil (ctokens); < 0 is debt. */
  tokens: z.number(),
  ctokens: z.number(),
  queuedBytes: count,
});

/** Why the redeemer refused tickets (RedeemCounts without the successes). */
export type TicketRefusal = Exclude<keyof RedeemCounts, 'redeemed'>;

/** Tickets signed by the issuer and spent at the redeemer since the relay started. */
export const ticketStatusSchema = z.strictObject({
  issued: count,
  redeemed: count,
  refused: z.strictObject({
    malformed: count,
    unknownKey: count,
    wrongDay: count,
    badSignature: count,
    spent: count,
  } satisfies Record<TicketRefusal, z.ZodType>),
  /**
   * Tickets of today (UTC) issued here since start, and by the whole family as kept in
   * storage (src/storage/issued-counter.ts; null until first read). A single relay is a
   * family of one, whose count also survives restarts.
   */
  issuedToday: z.strictObject({ here: count, family: count.nullable() }).optional(),
});

/**
 * What the relay shed or refused to stay responsive under load (docs/design.md §10.1): the
 * `load` section.
 */
export const loadStatusSchema = z.strictObject({
  /** Requests answered 38 since start: over the verification budget, or a worker queue full. */
  overloaded: z.strictObject({ redeem: count, share: count }),
  circuits: z.strictObject({
    /** Open now without a registration (redeem-only circuits among them). */
    unregistered: count,
    /** Upgrades refused with 503 at limits.maxUnregistered. */
    refusedUnregistered: count,
    /** Circuits closed for not registering within limits.registerTimeoutSeconds. */
    registerTimeouts: count,
    /** Registrations answered 37: limits.maxClients reached or no extranonce slot left. */
    refusedFull: count,
    /** Handshakes and unregistered circuits waiting their turn of the pace now. */
    waiting: count,
  }),
});

/** A row of the blocks-found list (RelayStats' FoundBlock). */
export const foundBlockSchema = z.strictObject({
  at: z.number(),
  height: count.nullable(),
  hash: z.string(),
  result: z.enum(BLOCK_RESULTS),
  reason: z.string().nullable(),
  count: z.number().int().min(1),
});

/** The software and how long it has run: the `relay` section. */
export const relayInfoSchema = z.strictObject({
  version: z.string(),
  /** Unix seconds. */
  startedAt: z.number(),
  uptimeSeconds: z.number(),
});

/** The priority tunnel: the `tunnel` section. */
export const tunnelStatusSchema = z.strictObject({
  /** Open streams by the leaf class their next bytes go to (an expired grant's is free). */
  streams: z.record(z.string(), count),
  /** Streams opened since start. */
  opened: count,
});

/** The sections the HTTP API builds itself. */
export const relayStatusSchema = z.strictObject({
  upstream: z.strictObject({
    state: z.enum(SOURCE_STATES),
    url: z.string().nullable(),
    difficulty: z.number().nullable(),
    extranonce2Size: z.number().int().nullable(),
    /** Unix seconds since the upstream has been in this state. */
    since: z.number(),
  }),
  clients: count,
  hashrate: z.strictObject({ hps: z.number(), windowSeconds: z.number() }),
  shares: z.strictObject({
    accepted: count,
    rejected: z.record(z.enum(SHARE_REJECT_REASONS), count),
  }),
  forwarded: z.strictObject({
    accepted: count,
    rejected: count,
    /** Of the rejected, those refused for coming too late (stats.ts isStaleOutcome). */
    stale: count,
    lastRejectReason: z.string().nullable(),
  }),
  /** stale ⊂ rejected; recent: the newest rows of the blocks-found list, newest first. */
  blocks: z.strictObject({
    found: count,
    accepted: count,
    rejected: count,
    stale: count,
    recent: z.array(foundBlockSchema),
  }),
  jobs: count,
  /** Present when the relay shapes tunnels; classes parents before children. */
  qos: z.strictObject({ classes: z.array(qosClassStatusSchema) }).optional(),
  /** Present when the relay issues tickets. */
  tickets: ticketStatusSchema.optional(),
  /** What the relay shed or refused to stay responsive (a relay always serves it). */
  load: loadStatusSchema.optional(),
  /** The relay's version and uptime (a relay always serves it). */
  relay: relayInfoSchema.optional(),
  /** Present when the relay runs the priority tunnel. */
  tunnel: tunnelStatusSchema.optional(),
  /** Present when the relay has a Stratum port: its miners now, connections let go by reason. */
  stratum: z
    .strictObject({
      clients: count,
      dropped: z.record(z.enum(STRATUM_DROP_REASONS), count),
    })
    .optional(),
});

/**
 * The whole answer of a relay with backup relays: the `peers` section is added by its owner
 * (Peering.status(), through HttpApiOptions.sections), null while it fails.
 */
export const relayStatusWithPeersSchema = relayStatusSchema.extend({
  peers: z.array(peerStatusSchema).nullable().optional(),
  /** With peers: peer API requests refused before they authenticated (Peering.apiStatus()). */
  peerApi: peerApiStatusSchema.nullable().optional(),
});

/**
 * GET /v1/status/history (status-history.ts): samples of the status numbers, oldest first.
 * `series` maps a name ("hashrate", "shares.accepted", "shares.rejected:stale",
 * "qos.bytesSent:free": a label after the colon) to one value per time; null where a series
 * did not exist yet. Counters are totals, so two samples give the rate between them.
 */
export const statusHistorySchema = z.strictObject({
  /** Seconds between samples, and how many the relay keeps. */
  intervalSeconds: z.number(),
  capacity: count,
  /** Unix seconds. */
  times: z.array(z.number()),
  series: z.record(z.string(), z.array(z.number().nullable())),
});

/** Its query: samples after `since` (unix seconds), thinned to at most `maxSamples`. */
const SINCE_ERROR = 'since: expected unix seconds, e.g. 1767225600';
const MAX_SAMPLES_ERROR = 'maxSamples: expected a whole number from 2 to 1000000';
export const statusHistoryQuerySchema = z.strictObject({
  since: z
    .string({ error: SINCE_ERROR })
    .regex(/^\d{1,12}(\.\d{1,6})?$/, { error: SINCE_ERROR })
    .transform(Number)
    .optional(),
  maxSamples: z
    .string({ error: MAX_SAMPLES_ERROR })
    .regex(/^\d{1,7}$/, { error: MAX_SAMPLES_ERROR })
    .transform(Number)
    .refine((n) => n >= 2 && n <= 1_000_000, { error: MAX_SAMPLES_ERROR })
    .optional(),
});

export type QosClassStatus = z.output<typeof qosClassStatusSchema>;
export type TicketStatus = z.output<typeof ticketStatusSchema>;
export type LoadStatus = z.output<typeof loadStatusSchema>;
export type RelayInfo = z.output<typeof relayInfoSchema>;
export type TunnelStatus = z.output<typeof tunnelStatusSchema>;
export type FoundBlockStatus = z.output<typeof foundBlockSchema>;
export type StatusHistoryAnswer = z.output<typeof statusHistorySchema>;
export type RelayStatus = z.output<typeof relayStatusSchema>;
export type RelayStatusWithPeers = z.output<typeof relayStatusWithPeersSchema>;
