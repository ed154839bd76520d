import { z } from 'zod';
import { TICKET_SCHEMES } from '../protocol/messages.js';

/**
 * The ticket file: how tickets move between the miner page's wallet (IndexedDB) and the CLI's
 * (`powbridge tickets export` / `import`), both ways (docs/operating.md, "The miner page").
 * One JSON object:
 *
 *     { "format": "powbridge-tickets", "version": 1,
 *       "relay": "ws://<host>/v1/circuit",          the relay the tickets are redeemed at
 *       "identity": "<64 hex>",                      optional: the relay identity pinned
 *       "keys": [ { keyId, scheme, publicKey,        optional: the listed keys the tickets are
 *                   notBeforeDay, notAfterDay } ],     under, as the signed descriptor showed them
 *       "tickets": [ { "ticket": "<base64url>", "keyId": "<16 hex>", "day": <UTC day> } ] }
 *
 * Tickets are bearer tokens: the file is as secret as the wallet. Whoever imports it checks
 * every ticket itself (format, key, signature, day); nothing in the file is taken on trust
 * but the keys, and those only when the relay's own descriptor cannot be fetched.
 * Browser-safe (zod only): the page bundles it.
 */

export const TICKET_FILE_FORMAT = 'powbridge-tickets';
export const TICKET_FILE_VERSION = 1;
export const MAX_FILE_TICKETS = 10_000;
/** Enough for MAX_FILE_TICKETS v2 tickets and their JSON. */
export const MAX_TICKET_FILE_BYTES = 8 * 1024 * 1024;

const hex = (bytes: number) =>
  z.string().regex(new RegExp(`^[0-9a-f]{${bytes * 2}}$`), `expected ${bytes} bytes of hex`);
const day = z.number().int().min(0).max(0xffffffff);

export const ticketFileKeySchema = z.object({
  keyId: hex(8),
  scheme: z.enum(TICKET_SCHEMES),
  publicKey: z.string().regex(/^(?:[0-9a-f]{2}){32,600}$/, 'expected 32 to 600 bytes of hex'),
  notBeforeDay: day,
  notAfterDay: day,
});

export const ticketFileEntrySchema = z.object({
  ticket: z.string().min(1).max(512),
  keyId: hex(8),
  day,
});

export const ticketFileSchema = z.object({
  format: z.literal(TICKET_FILE_FORMAT, { error: `expected "${TICKET_FILE_FORMAT}"` }),
  version: z.literal(TICKET_FILE_VERSION, {
    error: `expected ${TICKET_FILE_VERSION} (a newer powbridge wrote this file?)`,
  }),
  relay: z.string().min(1).max(512),
  identity: hex(32).optional(),
  keys: z.array(ticketFileKeySchema).max(64).default([]),
  tickets: z.array(ticketFileEntrySchema).max(MAX_FILE_TICKETS),
});

export type TicketFile = z.output<typeof ticketFileSchema>;
export type TicketFileKey = z.output<typeof ticketFileKeySchema>;
export type TicketFileEntry = z.output<typeof ticketFileEntrySchema>;

export class TicketFileError extends Error {
  override name = 'TicketFileError';
}

/** Parse a ticket file's text; throws TicketFileError naming the first problem. */
export function parseTicketFile(text: string): TicketFile {
  if (text.length > MAX_TICKET_FILE_BYTES) {
    throw new TicketFileError(`ticket file: larger than ${MAX_TICKET_FILE_BYTES} bytes`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new TicketFileError('ticket file: not JSON');
  }
  const parsed = ticketFileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new TicketFileError(
      `ticket file: ${issue?.path.join('.') || 'top level'}: ${issue?.message ?? 'invalid'}`,
    );
  }
  return parsed.data;
}

/** The file's text: one JSON object, two-space indented, a final newline. */
export function formatTicketFile(file: Omit<TicketFile, 'format' | 'version'>): string {
  const out: TicketFile = {
    format: TICKET_FILE_FORMAT,
    version: TICKET_FILE_VERSION,
    relay: file.relay,
    ...(file.identity === undefined ? {} : { identity: file.identity }),
    keys: file.keys,
    tickets: file.tickets,
  };
  return `${JSON.stringify(out, null, 2)}\n`;
}
