import { readFile } from 'node:fs/promises';
import { Agent as HttpAgent, type IncomingMessage, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { z } from 'zod';

/**
 * A JSON-RPC client for Bitcoin-style coin nodes (Litecoin Core, Bitcoin Core). HTTP POST with
 * basic auth; every answer is checked against a schema before anyone uses it. Failures come
 * out as NodeRpcError with a `kind`, so callers can tell "wrong password" from "node down"
 * from "the node said no".
 */

export type RpcAuth = { user: string; password: string } | { cookieFile: string };

export interface NodeRpcOptions {
  url: string;
  auth: RpcAuth;
  /** Per-call timeout unless the call says otherwise (default 30 s). */
  timeoutMs?: number;
}

export interface RpcCallOptions {
  /** Overrides the client's timeout; long-poll calls pass a long one. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export type RpcFailureKind =
  | 'auth'
  /** Nobody answered the connection: the request certainly did not reach the node. */
  | 'unreachable'
  /** The connection broke mid-call: the node may or may not have acted on the request. */
  | 'disconnected'
  | 'timeout'
  | 'aborted'
  | 'http'
  | 'invalid-response'
  | 'rpc';

export class NodeRpcError extends Error {
  override name = 'NodeRpcError';
  constructor(
    readonly kind: RpcFailureKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The node answered with a JSON-RPC error object (e.g. -8 invalid parameter, -10 in IBD). */
export class RpcCallError extends NodeRpcError {
  override name = 'RpcCallError';
  constructor(
    readonly method: string,
    readonly code: number,
    readonly rpcMessage: string,
  ) {
    super('rpc', `${method} failed: ${rpcMessage} (code ${code})`);
  }
}

const DEFAULT_TIMEOUT_MS = 30_000;
/** A mainnet template is a few MB of hex; anything far beyond is not a sane answer. */
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;
/** Connection-level failures that mean "nobody is there" rather than "it broke mid-call". */
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
]);

const envelopeSchema = z.object({
  result: z.unknown().optional(),
  error: z.object({ code: z.number(), message: z.string() }).nullable().optional(),
});

/** The URL as safe to show: no userinfo, whatever the operator typed. */
export function displayUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    return parsed.toString();
  } catch {
    return '(invalid URL)';
  }
}

export class NodeRpc {
  readonly url: string;
  private readonly target: URL;
  private readonly auth: RpcAuth;
  private readonly timeoutMs: number;
  private readonly agent: HttpAgent;
  private nextId = 1;

  constructor(options: NodeRpcOptions) {
    let target: URL;
    try {
      target = new URL(options.url);
    } catch {
      throw new TypeError('RPC URL is not a valid URL');
    }
    if (target.protocol !== 'http:' && target.protocol !== 'https:') {
      throw new TypeError(`RPC URL must be http:// or https://, got ${target.protocol}`);
    }
    // Credentials belong in `auth`; never keep them in the URL we log or send.
    target.username = '';
    target.password = '';
    this.target = target;
    this.url = target.toString();
    this.auth = options.auth;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    // No keep-alive: the node closes idle connections (rpcservertimeout), and a call sent on a
    // socket it is closing fails for nothing. Calls are rare enough that a fresh TCP
    // connection each time costs nothing, as with bitcoin-cli.
    this.agent =
      target.protocol === 'https:'
        ? new HttpsAgent({ keepAlive: false })
        : new HttpAgent({ keepAlive: false });
  }

  /** Call `method` and validate its result with `schema`. */
  async call<T>(
    method: string,
    params: readonly unknown[],
    schema: z.ZodType<T>,
    options: RpcCallOptions = {},
  ): Promise<T> {
    const authorization = await this.authorization();
    const body = JSON.stringify({ jsonrpc: '1.0', id: this.nextId++, method, params });
    const { status, text } = await this.post(body, authorization, method, options);
    if (status === 401) {
      throw new NodeRpcError(
        'auth',
        `RPC authentication failed at ${this.url} (check the RPC user/password or cookie file)`,
      );
    }
    if (status === 403) {
      throw new NodeRpcError('auth', `RPC access forbidden at ${this.url} (check rpcallowip)`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      // 503 (work queue full) and friends come as plain text or HTML.
      throw new NodeRpcError(
        status === 200 ? 'invalid-response' : 'http',
        `${method}: HTTP ${status} from ${this.url}: ${text.slice(0, 120).trim() || '(empty)'}`,
      );
    }
    const envelope = envelopeSchema.safeParse(json);
    if (!envelope.success) {
      throw new NodeRpcError(
        'invalid-response',
        `${method}: not a JSON-RPC answer (HTTP ${status})`,
      );
    }
    const { error, result } = envelope.data;
    if (error) throw new RpcCallError(method, error.code, error.message);
    if (status !== 200) {
      throw new NodeRpcError('http', `${method}: HTTP ${status} from ${this.url}`);
    }
    const parsed = schema.safeParse(result ?? null);
    if (!parsed.success) {
      throw new NodeRpcError(
        'invalid-response',
        `${method}: unexpected answer: ${z.prettifyError(parsed.error)}`,
      );
    }
    return parsed.data;
  }

  /** Close idle sockets (in-flight calls are ended by their abort signals). */
  close(): void {
    this.agent.destroy();
  }

  /** Basic auth header; the cookie is read on every call because the node rewrites it. */
  private async authorization(): Promise<string> {
    let user: string;
    let password: string;
    if ('cookieFile' in this.auth) {
      let cookie: string;
      try {
        cookie = (await readFile(this.auth.cookieFile, 'utf8')).trim();
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? 'error';
        throw new NodeRpcError(
          'auth',
          `cannot read RPC cookie file ${this.auth.cookieFile} (${code}); is the node running with this datadir?`,
          { cause: err },
        );
      }
      const colon = cookie.indexOf(':');
      if (colon < 0) {
        throw new NodeRpcError('auth', `RPC cookie file ${this.auth.cookieFile} is malformed`);
      }
      user = cookie.slice(0, colon);
      password = cookie.slice(colon + 1);
    } else {
      ({ user, password } = this.auth);
    }
    return `Basic ${Buffer.from(`${user}:${password}`, 'utf8').toString('base64')}`;
  }

  private post(
    body: string,
    authorization: string,
    method: string,
    options: RpcCallOptions,
  ): Promise<{ status: number; text: string }> {
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    const send = this.target.protocol === 'https:' ? httpsRequest : httpRequest;

    return new Promise((resolve, reject) => {
      const fail = (err: unknown): void => {
        if (options.signal?.aborted) {
          reject(new NodeRpcError('aborted', `${method}: aborted`, { cause: err }));
        } else if (timeout.aborted) {
          reject(
            new NodeRpcError('timeout', `${method}: no answer from ${this.url} in ${timeoutMs} ms`),
          );
        } else {
          const code = (err as NodeJS.ErrnoException).code;
          const unreachable = code !== undefined && UNREACHABLE_CODES.has(code);
          reject(
            new NodeRpcError(
              unreachable ? 'unreachable' : 'disconnected',
              unreachable
                ? `node unreachable at ${this.url} (${code})`
                : `connection to node at ${this.url} lost during ${method} (${code ?? String(err)})`,
              { cause: err },
            ),
          );
        }
      };
      if (signal.aborted) {
        fail(signal.reason);
        return;
      }
      const req = send(
        this.target,
        {
          method: 'POST',
          agent: this.agent,
          signal,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
            authorization,
          },
        },
        (res: IncomingMessage) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_RESPONSE_BYTES) {
              res.destroy();
              reject(new NodeRpcError('invalid-response', `${method}: answer larger than 64 MiB`));
              return;
            }
            chunks.push(chunk);
          });
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
          );
          res.on('error', fail);
        },
      );
      req.on('error', fail);
      req.end(body);
    });
  }
}
