import { relayWebSocketUrl } from './relay-url.js';
import type { Agent } from 'node:http';
import type { Duplex } from 'node:stream';
import WebSocket, { createWebSocketStream } from 'ws';
import { WsCloseCode } from '../lib/ws-close.js';

/**
 * The client end of the relay's priority tunnel (docs/design.md §5, §8; the relay side is
 * `src/qos/tunnel.ts`): one WebSocket to `/v1/tunnel?to=host:port` per TCP stream, binary
 * frames both ways, an optional `authorization: Priority <token>` for the paid class.
 *
 * The relay accepts the upgrade before it has checked the exit policy or connected to the
 * destination, and says nothing when the connection is made: a refusal arrives as a close
 * (1008 policy, 1011 connect failure). So `openTunnel` waits a short settle window after the
 * upgrade for such an early close, which lets a SOCKS front answer with the right reply code;
 * a destination slower than the window fails later as an aborted stream.
 */

/** Frames we send: well under the relay's 64 KiB cap. */
export const TUNNEL_FRAME_BYTES = 16 * 1024;

export type TunnelFailure =
  /** 401: the grant token is unknown or expired. */
  | 'unauthorized'
  /** 503: the relay has too many streams. */
  | 'busy'
  /** 400 or another HTTP answer: the relay did not take the request. */
  | 'rejected'
  /**
   * 1008 "destination not allowed": the exit policy refuses the port, the address or a name
   * that does not resolve; the relay does not say which, so nobody learns how names resolve
   * at the relay.
   */
  | 'not-allowed'
  /** 1011 "destination unreachable". */
  | 'unreachable'
  /** 1011 "connection refused". */
  | 'refused'
  /** 1011 "connect timeout". */
  | 'timeout'
  /** The relay itself could not be reached, or the handshake timed out. */
  | 'relay-unreachable'
  /** Aborted by the caller. */
  | 'aborted'
  /** Any other close. */
  | 'failed';

export class TunnelError extends Error {
  override readonly name = 'TunnelError';
  constructor(
    readonly failure: TunnelFailure,
    message: string,
    /** HTTP status of a refused upgrade, or the WebSocket close code. */
    readonly code?: number,
  ) {
    super(message);
  }
}

export interface OpenTunnelOptions {
  /** Grant token, sent as `authorization: Priority <token>`. */
  token?: string | null;
  /** E.g. a SOCKS agent, to reach the relay through Tor. */
  agent?: Agent;
  /** Upgrade handshake timeout (default 15 s). */
  timeoutMs?: number;
  /** How long to wait after the upgrade for an early refusal (default 250 ms; 0: none). */
  settleMs?: number;
  signal?: AbortSignal;
}

/** The URL of the tunnel endpoint of the relay at `relayBaseUrl` (http(s)/ws(s), any path). */
export function tunnelUrl(relayBaseUrl: string, to: string): string {
  const url = relayWebSocketUrl(relayBaseUrl);
  return `${url.protocol}//${url.host}/v1/tunnel?to=${encodeURIComponent(to)}`;
}

/**
 * Open a stream to `to` ("host:port", IPv6 as "[addr]:port") through the relay. Resolves with
 * a Duplex once the relay has accepted it and not refused it within the settle window;
 * rejects with a TunnelError. Writes are split into frames of at most 16 KiB. A stream the
 * relay ends abnormally later is destroyed with a TunnelError.
 */
export function openTunnel(
  relayBaseUrl: string,
  to: string,
  options: OpenTunnelOptions = {},
): Promise<Duplex> {
  const url = tunnelUrl(relayBaseUrl, to);
  const { signal } = options;
  if (signal?.aborted) return Promise.reject(new TunnelError('aborted', 'aborted'));
  const ws = new WebSocket(url, {
    ...(options.token ? { headers: { authorization: `Priority ${options.token}` } } : {}),
    ...(options.agent ? { agent: options.agent } : {}),
    handshakeTimeout: options.timeoutMs ?? 15_000,
    perMessageDeflate: false,
    maxPayload: 1024 * 1024,
  });
  const settleMs = options.settleMs ?? 250;

  return new Promise<Duplex>((resolve, reject) => {
    let settled = false;
    let stream: Duplex | null = null;
    let timer: NodeJS.Timeout | undefined;
    const done = (err: TunnelError | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      ws.off('message', onFirstMessage);
      if (err) {
        ws.terminate();
        stream?.destroy();
        reject(err);
      } else {
        resolve(stream!);
      }
    };
    const onAbort = (): void => done(new TunnelError('aborted', 'aborted'));
    const onFirstMessage = (): void => done(null);
    signal?.addEventListener('abort', onAbort, { once: true });

    ws.once('unexpected-response', (_request, response) => {
      const status = response.statusCode ?? 0;
      response.resume();
      const failure: TunnelFailure =
        status === 401 ? 'unauthorized' : status === 503 ? 'busy' : 'rejected';
      done(new TunnelError(failure, `relay answered ${status} to the tunnel request`, status));
    });
    ws.on('error', (err) => {
      if (!stream) done(new TunnelError('relay-unreachable', `relay unreachable: ${err.message}`));
    });
    ws.once('close', (code: number, reason: Buffer) => {
      const text = reason.toString();
      if (code === WsCloseCode.normal || code === WsCloseCode.noStatus) {
        done(null); // closed normally: whatever the destination sent is in the stream
        return;
      }
      const err = closeError(code, text);
      if (!settled) done(err);
      else if (stream && !stream.destroyed) stream.destroy(err);
    });
    ws.once('open', () => {
      stream = chunked(createWebSocketStream(ws));
      // The stream's own error listener is there; keep an unhandled one from crashing us
      // before the caller attaches theirs.
      stream.on('error', () => {});
      if (settleMs <= 0) return done(null);
      ws.on('message', onFirstMessage);
      timer = setTimeout(() => done(null), settleMs);
    });
  });
}

/** The TunnelError for a close code and reason sent by the relay. */
export function closeError(code: number, reason: string): TunnelError {
  const detail = reason ? `${code} ${reason}` : String(code);
  if (code === WsCloseCode.policyViolation) {
    return new TunnelError('not-allowed', `tunnel refused: ${detail}`, code);
  }
  if (code === WsCloseCode.internalError) {
    if (reason === 'connection refused') {
      return new TunnelError('refused', `tunnel failed: ${detail}`, code);
    }
    if (reason === 'connect timeout') {
      return new TunnelError('timeout', `tunnel failed: ${detail}`, code);
    }
    if (reason === 'destination unreachable') {
      return new TunnelError('unreachable', `tunnel failed: ${detail}`, code);
    }
  }
  return new TunnelError('failed', `tunnel closed: ${detail}`, code);
}

/** Split writes into frames of at most TUNNEL_FRAME_BYTES, each sent after the previous. */
function chunked(stream: Duplex): Duplex {
  const write = stream._write.bind(stream);
  stream._write = (chunk: Buffer, encoding: BufferEncoding, callback) => {
    if (chunk.length <= TUNNEL_FRAME_BYTES) return write(chunk, encoding, callback);
    let at = 0;
    const next = (err?: Error | null): void => {
      if (err) return callback(err);
      if (at >= chunk.length) return callback();
      const piece = chunk.subarray(at, at + TUNNEL_FRAME_BYTES);
      at += piece.length;
      write(piece, encoding, next);
    };
    next();
  };
  return stream;
}
