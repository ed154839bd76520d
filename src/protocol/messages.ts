import { z } from 'zod';
import { hex8, hexAny, hexBytes } from '../stratum/fields.js';
import { ALGORITHMS } from '../work/algorithm.js';
import { MIN_DIFFICULTY } from '../work/target.js';

/**
 * One schema per circuit message (docs/design.md §5). Both ends parse with these: the relay
 * validates what clients send, the client validates what the relay sends. Types come from the
 * schemas, so there is one source of truth.
 */

const difficulty = z
  .number({ error: 'difficulty: expected a number' })
  .refine((d) => Number.isFinite(d) && d >= MIN_DIFFICULTY, {
    error: `difficulty: must be a finite number >= ${MIN_DIFFICULTY}`,
  });
const jobId = z
  .string({ error: 'jobId: expected a string' })
  .min(1, { error: 'jobId: must not be empty' })
  .max(64, { error: 'jobId: longer than 64 characters' });

export const registerParams = z.strictObject({
  agent: z.string().max(64, { error: 'agent: longer than 64 characters' }),
  mode: z.enum(['tickets', 'donate'], { error: 'mode: expected "tickets" or "donate"' }),
});

/**
 * Ticket schemes by their wire names (docs/design.md §6.1, §6.5): the paper's Abe–Okamoto
 * (v1 tickets) and partially blind RSA (v2 tickets, the default).
 */
export const AO_SCHEME = 'ao-ristretto255';
export const RSA_SCHEME = 'rsapbssa-sha384-pss-deterministic';
export const TICKET_SCHEMES = [AO_SCHEME, RSA_SCHEME] as const;
export type TicketSchemeName = (typeof TICKET_SCHEMES)[number];

/** An RSA public key as SPKI DER (a 2048-bit key is 294 bytes). */
export const RSA_SPKI_MAX_BYTES = 600;

const termsCommon = {
  keyId: hexBytes('keyId', 8, 8),
  day: z.number().int().nonnegative(),
  price: z.number().positive(),
  windowSeconds: z.number().int().positive(),
};
export const aoTicketTerms = z.strictObject({
  scheme: z.literal(AO_SCHEME),
  ...termsCommon,
  publicKey: hexBytes('publicKey', 32, 32),
});
export const rsaTicketTerms = z.strictObject({
  scheme: z.literal(RSA_SCHEME),
  ...termsCommon,
  /** SPKI DER of the master public key (n, e); the day's key is derived from it. */
  publicKey: hexBytes('publicKey', 64, RSA_SPKI_MAX_BYTES),
});
export const ticketTerms = z.discriminatedUnion('scheme', [aoTicketTerms, rsaTicketTerms], {
  error: `ticket.scheme: expected "${AO_SCHEME}" or "${RSA_SCHEME}"`,
});

export const registerResult = z.strictObject({
  algorithm: z.enum(ALGORITHMS),
  extranonce1: hexBytes('extranonce1', 1, 32),
  extranonce2Size: z.number().int().min(1).max(16),
  difficulty,
  versionMask: hex8('versionMask').nullable(),
  ticket: ticketTerms.nullable(),
});

export const jobParams = z.strictObject({
  jobId,
  prevhash: hexBytes('prevhash', 32, 32),
  coinb1: hexAny('coinb1'),
  coinb2: hexAny('coinb2'),
  merkleBranch: z.array(hexBytes('merkleBranch', 32, 32)).max(32),
  version: hex8('version'),
  nbits: hex8('nbits'),
  ntime: hex8('ntime'),
  clean: z.boolean({ error: 'clean: expected a boolean' }),
});

export const setDifficultyParams = z.strictObject({ difficulty });

/**
 * Not in the paper's cells, needed by the design's rules (docs/design.md §5): the upstream's
 * extranonce2 size or version mask can change mid-session (§4.2), and clients must be told
 * when there is no work (§3.1). They mirror Stratum's mining.set_extranonce /
 * mining.set_version_mask.
 */
export const setExtranonceParams = z.strictObject({
  extranonce1: hexBytes('extranonce1', 1, 32),
  extranonce2Size: z.number().int().min(1).max(16),
});

export const setVersionMaskParams = z.strictObject({
  versionMask: hex8('versionMask').nullable(),
});

export const relayStateParams = z.strictObject({
  upstream: z.enum(['live', 'down']),
  message: z.string().max(256),
});

export const submitParams = z.strictObject({
  jobId,
  extranonce2: hexBytes('extranonce2', 1, 16),
  ntime: hex8('ntime'),
  nonce: hex8('nonce'),
  versionBits: hex8('versionBits').optional(),
});

export const submitResult = z.strictObject({
  accepted: z.literal(true),
  credit: z.number().nonnegative(),
});

const hex32 = (name: string) => hexBytes(name, 32, 32);

export const ticketOpenParams = z.strictObject({});
export const ticketOpenResult = z.strictObject({
  session: hexBytes('session', 16, 16),
  keyId: hexBytes('keyId', 8, 8),
  day: z.number().int().nonnegative(),
  a: hex32('a'),
  b: hex32('b'),
});
export const ticketFinishParams = z.strictObject({
  session: hexBytes('session', 16, 16),
  e: hex32('e'),
});
export const ticketFinishResult = z.strictObject({
  r: hex32('r'),
  c: hex32('c'),
  s: hex32('s'),
  d: hex32('d'),
});
/** RSA blocks on the wire: 256 bytes (2048-bit modulus), hex. */
const rsaBlock = (name: string) => hexBytes(name, 256, 256);
export const ticketIssueParams = z.strictObject({
  keyId: hexBytes('keyId', 8, 8),
  day: z.number({ error: 'day: expected a number' }).int().nonnegative().max(0xffffffff),
  blindedMsg: rsaBlock('blindedMsg'),
});
export const ticketIssueResult = z.strictObject({ blindSig: rsaBlock('blindSig') });
export const ticketRedeemParams = z.strictObject({
  // v1 tickets are 231 characters, v2 402.
  ticket: z
    .string({ error: 'ticket: expected a base64url string' })
    .max(512, { error: 'ticket: too long' }),
  /** A live grant's token: the ticket tops it up (a higher group) instead of a new grant. */
  grant: z
    .string({ error: 'grant: expected the token of a grant' })
    .regex(/^[A-Za-z0-9_-]{16,128}$/, { error: 'grant: not a grant token' })
    .optional(),
});
export const ticketRedeemResult = z.strictObject({
  token: z.string().min(16).max(128),
  class: z.string().min(1).max(32),
  expiresAt: z.number().int().positive(),
});

export type RegisterParams = z.infer<typeof registerParams>;
export type TicketOpenResult = z.infer<typeof ticketOpenResult>;
export type TicketFinishParams = z.infer<typeof ticketFinishParams>;
export type TicketFinishResult = z.infer<typeof ticketFinishResult>;
export type TicketIssueParams = z.infer<typeof ticketIssueParams>;
export type TicketIssueResult = z.infer<typeof ticketIssueResult>;
export type TicketRedeemParams = z.infer<typeof ticketRedeemParams>;
export type TicketRedeemResult = z.infer<typeof ticketRedeemResult>;
export type RegisterResult = z.infer<typeof registerResult>;
export type TicketTerms = z.infer<typeof ticketTerms>;
export type AoTicketTerms = z.infer<typeof aoTicketTerms>;
export type RsaTicketTerms = z.infer<typeof rsaTicketTerms>;
export type JobParams = z.infer<typeof jobParams>;
export type SetDifficultyParams = z.infer<typeof setDifficultyParams>;
export type SubmitParams = z.infer<typeof submitParams>;
export type SetExtranonceParams = z.infer<typeof setExtranonceParams>;
export type SetVersionMaskParams = z.infer<typeof setVersionMaskParams>;
export type RelayStateParams = z.infer<typeof relayStateParams>;
export type SubmitResult = z.infer<typeof submitResult>;

/** Requests a client sends, with the schema of their params and of the relay's result. */
export const clientRequests = {
  'mining.register': { params: registerParams, result: registerResult },
  'mining.submit': { params: submitParams, result: submitResult },
  'ticket.open': { params: ticketOpenParams, result: ticketOpenResult },
  'ticket.finish': { params: ticketFinishParams, result: ticketFinishResult },
  'ticket.issue': { params: ticketIssueParams, result: ticketIssueResult },
  'ticket.redeem': { params: ticketRedeemParams, result: ticketRedeemResult },
} as const;

/** Notifications the relay sends. */
export const relayNotifications = {
  'mining.job': jobParams,
  'mining.set_difficulty': setDifficultyParams,
  'mining.set_extranonce': setExtranonceParams,
  'mining.set_version_mask': setVersionMaskParams,
  'relay.state': relayStateParams,
} as const;

export type RelayNotification = keyof typeof relayNotifications;

export type ClientMethod = keyof typeof clientRequests;

export function isClientMethod(method: string): method is ClientMethod {
  return Object.hasOwn(clientRequests, method);
}

/** First issue of a failed parse, as one line that names the field. */
export function describeIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid params';
  const path = issue.path.map(String);
  // The schemas' own messages begin with their field ("jobId: expected a string"); zod's do
  // not ("Invalid input: expected string, received undefined" for a missing field).
  const named = path.some(
    (part) => /^[:.]/.test(issue.message.slice(part.length)) && issue.message.startsWith(part),
  );
  return path.length === 0 || named ? issue.message : `${path.join('.')}: ${issue.message}`;
}
