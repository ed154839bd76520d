import { RpcErrorCode } from '../protocol/errors.js';

/**
 * Stratum V1 errors. Pools disagree on the error shape: null, absent, an array
 * `[code, message, data]` (the original Stratum form), a JSON-RPC object `{code, message}`, a
 * bare string, or `result: false` with a top-level `reject-reason` (ckpool). Everything is
 * normalised to one shape here so callers never look at the raw field.
 */

export interface StratumError {
  /** null when the peer gave no numeric code. */
  code: number | null;
  message: string;
  data?: unknown;
}

/**
 * Codes used on the wire: the share codes of docs/design.md §4.3 plus JSON-RPC's, under their
 * Stratum names, taken from the one table so no number is written twice.
 */
export const StratumErrorCode = {
  other: RpcErrorCode.shareOther,
  jobNotFound: RpcErrorCode.jobNotFound,
  duplicateShare: RpcErrorCode.duplicateShare,
  lowDifficulty: RpcErrorCode.lowDifficulty,
  unauthorized: RpcErrorCode.unauthorized,
  notSubscribed: RpcErrorCode.notRegistered,
  methodNotFound: RpcErrorCode.methodNotFound,
} as const;

/** Peer-supplied text ends up in logs and operator messages: keep it bounded. */
const MAX_MESSAGE_CHARS = 256;

function boundedText(value: unknown): string {
  let text: string;
  if (typeof value === 'string') text = value;
  else {
    try {
      text = JSON.stringify(value) ?? String(value);
    } catch {
      text = String(value);
    }
  }
  return text.length > MAX_MESSAGE_CHARS ? `${text.slice(0, MAX_MESSAGE_CHARS)}…` : text;
}

function asCode(value: unknown): number | null {
  if (typeof value === 'number' && Number.isInteger(value)) return value;
  if (typeof value === 'string' && /^-?\d{1,9}$/.test(value)) return Number(value);
  return null;
}

/**
 * The `error` field of a response, normalised; null when it says "no error" (null, absent,
 * false). Never throws.
 */
export function normaliseError(raw: unknown): StratumError | null {
  if (raw === null || raw === undefined || raw === false) return null;
  if (Array.isArray(raw)) {
    const [code, message, data] = raw as unknown[];
    const error: StratumError = {
      code: asCode(code),
      message: message === undefined || message === null ? 'unknown error' : boundedText(message),
    };
    if (data !== undefined && data !== null) error.data = data;
    return error;
  }
  if (typeof raw === 'object') {
    const record = raw as Record<string, unknown>;
    const text = record.message ?? record.msg ?? record.error;
    const error: StratumError = {
      code: asCode(record.code),
      message: text === undefined || text === null ? boundedText(raw) : boundedText(text),
    };
    if (record.data !== undefined && record.data !== null) error.data = record.data;
    return error;
  }
  if (typeof raw === 'number') return { code: asCode(raw), message: `error ${raw}` };
  return { code: null, message: boundedText(raw) };
}

export type ResponseOutcome = { ok: true; result: unknown } | { ok: false; error: StratumError };

/**
 * What a response means: an error if `error` says so, or if `result` is false (pools that
 * reject with `result: false` put the reason in `reject-reason`, or nowhere).
 */
export function responseOutcome(
  result: unknown,
  error: unknown,
  rejectReason?: unknown,
): ResponseOutcome {
  const normalised = normaliseError(error);
  if (normalised !== null) return { ok: false, error: normalised };
  if (result === false) {
    const message =
      rejectReason === undefined || rejectReason === null ? 'rejected' : boundedText(rejectReason);
    return { ok: false, error: { code: null, message } };
  }
  return { ok: true, result };
}

/** One line for logs and SubmitOutcome reasons: "23 low difficulty share". */
export function describeError(error: StratumError): string {
  return error.code === null ? error.message : `${error.code} ${error.message}`;
}
