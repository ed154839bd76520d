import { type ResponseOutcome, responseOutcome, type StratumError } from './errors.js';
import { type Call, encodeParams, isMethod, paramSchemas } from './params.js';

/**
 * One Stratum V1 line ⇄ one typed message. Parsing never throws: garbage yields
 * `{ok: false, error}` and the caller decides (a pool client drops the connection; a server
 * may answer the request id, when there was one, before dropping).
 */

/** Stratum ids are whatever the sender chose: integers, strings, or null on notifications. */
export type StratumId = number | string | null;

export type ParseResult<T> = { ok: true; value: T } | { ok: false; error: string };

export type StratumMessage =
  /** A known method with an id: the sender expects an answer. */
  | ({ kind: 'request'; id: number | string } & Call)
  /** A known method without an id (id null or absent). */
  | ({ kind: 'notification' } & Call)
  /** A well-formed call of a method this codec does not know; answer an error if it has an id. */
  | { kind: 'unknown'; id: StratumId; method: string; params: unknown[] }
  | { kind: 'response'; id: StratumId; outcome: ResponseOutcome };

export type ParseFailure = {
  ok: false;
  error: string;
  /** Present when the envelope was readable, so a server can answer the request. */
  id?: StratumId;
  method?: string;
};

export type MessageParseResult = { ok: true; value: StratumMessage } | ParseFailure;

function isId(value: unknown): value is StratumId {
  return (
    value === null ||
    typeof value === 'string' ||
    (typeof value === 'number' && Number.isFinite(value))
  );
}

export function parseMessage(line: string): MessageParseResult {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    return { ok: false, error: 'not JSON' };
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    return { ok: false, error: 'not a JSON object' };
  }
  const envelope = json as Record<string, unknown>;
  const id = envelope.id ?? null;
  if (!isId(id)) return { ok: false, error: 'id must be a number, a string or null' };

  if ('method' in envelope) return parseCall(id, envelope.method, envelope.params);
  if ('result' in envelope || 'error' in envelope) {
    const outcome = responseOutcome(envelope.result, envelope.error, envelope['reject-reason']);
    return { ok: true, value: { kind: 'response', id, outcome } };
  }
  return { ok: false, error: 'neither a call (method) nor a response (result/error)', id };
}

function parseCall(id: StratumId, method: unknown, rawParams: unknown): MessageParseResult {
  if (typeof method !== 'string' || method === '') {
    return { ok: false, error: 'method must be a non-empty string', id };
  }
  // Params are positional in Stratum V1; an absent or null params means none.
  const params = rawParams ?? [];
  if (!Array.isArray(params)) {
    return { ok: false, error: `${method}: params must be an array`, id, method };
  }
  if (!isMethod(method)) return { ok: true, value: { kind: 'unknown', id, method, params } };

  const parsed = paramSchemas[method].safeParse(params);
  if (!parsed.success) {
    const reason = parsed.error.issues[0]?.message ?? 'invalid params';
    return { ok: false, error: `${method}: ${reason}`, id, method };
  }
  // The schema table is keyed by method, so the params belong to this method.
  const call = { method, params: parsed.data } as Call;
  const value: StratumMessage =
    id === null ? { kind: 'notification', ...call } : { kind: 'request', id, ...call };
  return { ok: true, value };
}

function line(object: Record<string, unknown>): string {
  return `${JSON.stringify(object)}\n`;
}

/** A request line (with its trailing newline). */
export function encodeRequest(id: number | string, call: Call): string {
  return line({ id, method: call.method, params: encodeParams(call) });
}

/** A notification line: Stratum V1 sends these with `id: null`. */
export function encodeNotification(call: Call): string {
  return line({ id: null, method: call.method, params: encodeParams(call) });
}

/** A successful response. `result` must be JSON-serialisable. */
export function encodeResult(id: StratumId, result: unknown): string {
  return line({ id, result, error: null });
}

/** An error response in the original Stratum array form, which every miner understands. */
export function encodeError(id: StratumId, error: StratumError): string {
  return line({ id, result: null, error: [error.code, error.message, error.data ?? null] });
}
