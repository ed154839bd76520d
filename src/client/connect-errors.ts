import { RpcError, RpcErrorCode } from '../protocol/errors.js';

/**
 * Why the miner could not get (or keep) a circuit, in words a user acts on. The miner
 * retries what may pass (a relay restarting, Tor still building circuits, a relay without
 * upstream work yet) and stops on what cannot (a wrong URL path, a relay that is not the one
 * pinned): mining on would only burn CPU for work or tickets nobody can use.
 */

/** This relay cannot be mined for: the miner stops (exit code 2) instead of retrying. */
export class UnusableRelayError extends Error {
  override name = 'UnusableRelayError';
}

/**
 * A local port the user asked for (--socks-listen, --stratum-listen) cannot be opened: the
 * miner stops (exit code 2) rather than run without what was asked for.
 */
export class LocalListenError extends Error {
  override name = 'LocalListenError';
  constructor(flag: string, at: { host: string; port: number }, cause: unknown) {
    const code = (cause as NodeJS.ErrnoException | null)?.code;
    const why =
      code === 'EADDRINUSE'
        ? 'the port is in use'
        : code === 'EACCES'
          ? 'not allowed to listen there'
          : code === 'EADDRNOTAVAIL'
            ? 'no such local address'
            : cause instanceof Error
              ? cause.message
              : String(cause);
    super(`${flag} ${at.host}:${at.port}: cannot listen: ${why}${code ? ` (${code})` : ''}`);
  }
}

/** The WebSocket upgrade was answered with an HTTP status instead of 101. */
export class UpgradeRefusedError extends Error {
  override name = 'UpgradeRefusedError';
  constructor(readonly status: number) {
    super(`HTTP ${status} instead of a WebSocket upgrade`);
  }
}

export type FailureVerdict =
  /** Stop: nothing will change by retrying. */
  | { kind: 'fatal'; error: UnusableRelayError }
  /** The relay answered but will not take us yet (37): pause until `retryAfter`. */
  | { kind: 'refused'; reason: string }
  /** The circuit failed: reconnect after the backoff. */
  | { kind: 'retry'; reason: string };

/** The circuit endpoint on the same host: what a URL with a wrong path should have been. */
export function circuitEndpointOf(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}/v1/circuit`;
  } catch {
    return 'ws://<host>:<port>/v1/circuit';
  }
}

function errno(err: unknown): { code?: string; port?: number } {
  if (typeof err !== 'object' || err === null) return {};
  const { code, port } = err as { code?: unknown; port?: unknown };
  return {
    ...(typeof code === 'string' ? { code } : {}),
    ...(typeof port === 'number' ? { port } : {}),
  };
}

const ERRNO_WORDS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ETIMEDOUT: 'timed out',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host not found (DNS lookup failed)',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
};

/**
 * Classify a failure of the circuit to `url`: while connecting (`stage` 'connect') or once
 * connected (registering, checking the relay). `proxy`: the SOCKS proxy in use, if any.
 * Every reason is one line that names the relay and, where there is one, what to check.
 */
export function judgeFailure(
  url: string,
  err: unknown,
  stage: 'connect' | 'circuit',
  proxy?: string,
): FailureVerdict {
  if (err instanceof UnusableRelayError) return { kind: 'fatal', error: err };
  if (err instanceof UpgradeRefusedError) {
    if (err.status === 404) {
      const endpoint = circuitEndpointOf(url);
      const hint =
        endpoint === url
          ? 'is this a powbridge relay?'
          : `the circuit URL ends in /v1/circuit: try ${endpoint}`;
      return {
        kind: 'fatal',
        error: new UnusableRelayError(`no circuit endpoint at ${url} (HTTP 404); ${hint}`),
      };
    }
    return {
      kind: 'retry',
      reason: `${url} answered HTTP ${err.status} instead of opening a circuit`,
    };
  }
  if (err instanceof RpcError) {
    if (err.code === RpcErrorCode.relayFull) {
      return { kind: 'refused', reason: `relay not ready (${err.message})` };
    }
    return { kind: 'retry', reason: `the relay refused the circuit: ${err.message} (${err.code})` };
  }
  const message = err instanceof Error ? err.message : String(err);
  const { code, port } = errno(err);
  const words = code ? ERRNO_WORDS[code] : undefined;
  if (proxy && port !== undefined && code === 'ECONNREFUSED' && proxyPort(proxy) === port) {
    return {
      kind: 'retry',
      reason: `cannot reach the proxy ${proxy}: connection refused; is Tor running?`,
    };
  }
  if (words) {
    const hint = code === 'ECONNREFUSED' ? '; is the relay running?' : '';
    return { kind: 'retry', reason: `cannot reach ${url}: ${words}${hint}` };
  }
  if (/handshake has timed out/i.test(message)) {
    return { kind: 'retry', reason: `cannot reach ${url}: timed out` };
  }
  if (stage === 'circuit') return { kind: 'retry', reason: `${url}: ${message}` };
  const via = proxy ? ` through ${proxy}` : '';
  return { kind: 'retry', reason: `cannot reach ${url}${via}: ${message}` };
}

function proxyPort(proxy: string): number | null {
  try {
    const port = Number(new URL(proxy).port);
    return Number.isInteger(port) && port > 0 ? port : null;
  } catch {
    return null;
  }
}
