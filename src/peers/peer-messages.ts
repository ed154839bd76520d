import { z } from 'zod';

/**
 * Bodies of the peer API (`/v1/peer/*`, docs/design.md §7): one schema per message, used by both
 * ends. Binary values are lowercase hex, as everywhere else (docs/design.md §5).
 */

export const PEER_PREFIX = '/v1/peer';
export const MAX_RESERVE_BATCH = 100;
export const MAX_SPENT_PAGE = 1_000;
export const MAX_REQUEST_SERIALS = 10_000;

const hex = (bytes: number) =>
  z.string().regex(new RegExp(`^[0-9a-f]{${bytes * 2}}$`), `expected ${bytes} bytes of hex`);
const day = z.number().int().min(0).max(0xffffffff);
const unixSeconds = z
  .number()
  .int()
  .min(0)
  .max(2 ** 40);
const messageId = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'expected an id of 1-64 [A-Za-z0-9_-]');

export const spentSerial = z.strictObject({ serial: hex(32), keyId: hex(8), day });
export type SpentSerialJson = z.output<typeof spentSerial>;

/** R2 asks R1 to mark R1's serials spent before R2 grants priority for them. */
export const reserveRequest = z.strictObject({
  serials: z.array(spentSerial).min(1).max(MAX_RESERVE_BATCH),
});
export const reserveResult = z.enum(['reserved', 'spent', 'unknown_key']);
export type ReserveResult = z.output<typeof reserveResult>;
export const reserveResponse = z.strictObject({
  results: z
    .array(z.strictObject({ serial: hex(32), result: reserveResult }))
    .max(MAX_RESERVE_BATCH),
});

/** GET /v1/peer/spent?after=<seq>&limit=<n>: the sender's own redemptions after a cursor. */
export const spentQuery = z.strictObject({
  after: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  limit: z.coerce.number().int().min(1).max(MAX_SPENT_PAGE).default(MAX_SPENT_PAGE),
});
export const spentRecordJson = spentSerial.extend({
  seq: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  at: unixSeconds,
});
export const spentResponse = z.strictObject({
  records: z.array(spentRecordJson).max(MAX_SPENT_PAGE),
  /** True when the page was full: ask again from the last seq. */
  more: z.boolean(),
  /** The sender's highest seq ever; below the asker's cursor, its log was rebuilt. */
  head: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
});

/** PAYMENT_REQUEST: R2 bills R1 for `count` of R1's tickets it served. */
export const paymentRequest = z
  .strictObject({
    id: messageId,
    count: z.number().int().min(1).max(MAX_REQUEST_SERIALS),
    digest: hex(32),
    period: z.strictObject({ from: unixSeconds, to: unixSeconds }),
    serials: z.array(spentSerial).min(1).max(MAX_REQUEST_SERIALS),
  })
  .refine((r) => r.serials.length === r.count, { error: 'count must equal serials.length' })
  .refine((r) => r.period.from <= r.period.to, { error: 'period.from must be <= period.to' });
export const paymentResponse = z.strictObject({
  recorded: z.boolean(),
  /** How many of the serials the debtor already knew as spent at the creditor. */
  known: z.number().int().min(0),
});

export const MAX_SETTLE_TICKETS = 1_000;

/**
 * The debtor settles `count` tickets: 'operator' when its operator confirms a payment made
 * elsewhere (trusted as said), or 'work' with tickets of the creditor's own keys that the
 * debtor earned by pointing mining work at the creditor: those the creditor can verify and
 * spend itself, so only the ones that verify count.
 */
export const settleRequest = z
  .strictObject({
    id: messageId,
    count: z.number().int().min(1).max(1_000_000_000),
    method: z.enum(['operator', 'work']),
    at: unixSeconds,
    tickets: z.array(z.string().min(1).max(512)).min(1).max(MAX_SETTLE_TICKETS).optional(),
  })
  .refine((s) => (s.method === 'work' ? s.tickets?.length === s.count : s.tickets === undefined), {
    error: "method 'work' carries exactly `count` tickets; 'operator' carries none",
  });
export const settleResponse = z.strictObject({
  recorded: z.boolean(),
  /** How many tickets were settled: `count`, or for 'work' the tickets that verified. */
  accepted: z.number().int().min(0),
});

/** Every refusal: `{error: {code, message}}`; the code is a stable snake_case word. */
export const peerErrorBody = z.object({
  error: z.object({ code: z.string().regex(/^[a-z_]{1,40}$/), message: z.string() }),
});
export type PeerErrorBody = z.output<typeof peerErrorBody>;
