import { randomBytes } from 'node:crypto';
import { type Agent, request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { z } from 'zod';
import {
  HEADER_SIGNATURE,
  HEADER_TIMESTAMP,
  type PeerSigner,
  responseSigningBytes,
  signedRequestHeaders,
  verifySigned,
} from './peer-auth.js';
import { peerErrorBody } from './peer-messages.js';

/**
 * The calling side of the peer API: one signed HTTP request to one peer, its answer checked
 * against the peer's pinned identity before anything in it is used. node:http rather than
 * fetch, so the request can go through a SOCKS agent (onion peers through Tor).
 */

export const MAX_PEER_BODY_BYTES = 2 << 20;

export class PeerUnreachableError extends Error {
  override name = 'PeerUnreachableError';
}

/** The peer answered, signed, with an error (4xx/5xx); `code` is its stable error code. */
export class PeerRefusedError extends Error {
  override name = 'PeerRefusedError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface PeerEndpoint {
  name: string;
  /** http(s) base URL. */
  url: string;
  identity: string;
}

export interface PeerClientOptions {
  self: PeerSigner;
  peer: PeerEndpoint;
  timeoutMs: number;
  clockSkewSeconds: number;
  now: () => number;
  agent?: Agent;
}

export class PeerClient {
  constructor(private readonly options: PeerClientOptions) {}

  get peer(): PeerEndpoint {
    return this.options.peer;
  }

  /** A signed call; resolves with the parsed, schema-checked body of a 2xx answer. */
  async call<T extends z.ZodType>(
    method: 'GET' | 'POST',
    path: string,
    body: unknown,
    schema: T,
  ): Promise<z.output<T>> {
    const { self, peer } = this.options;
    const text = body === undefined ? '' : JSON.stringify(body);
    const timestamp = Math.floor(this.options.now());
    const nonce = randomBytes(16).toString('hex');
    const answer = await this.send(
      method,
      path,
      text,
      signedRequestHeaders(self, {
        method,
        path,
        to: peer.identity,
        from: self.publicKeyHex,
        timestamp,
        nonce,
        body: text,
      }),
    );
    if (answer.headers[HEADER_SIGNATURE] === undefined) throw unsignedAnswer(peer.name, answer);
    const answerTimestamp = Number(answer.headers[HEADER_TIMESTAMP]);
    const answerSignature = String(answer.headers[HEADER_SIGNATURE]);
    const signed = responseSigningBytes({
      status: answer.status,
      from: peer.identity,
      to: self.publicKeyHex,
      requestNonce: nonce,
      timestamp: answerTimestamp,
      body: answer.body,
    });
    if (
      !Number.isSafeInteger(answerTimestamp) ||
      !verifySigned(peer.identity, signed, answerSignature)
    ) {
      // Not from the peer we pinned (or not for this request): as good as no answer.
      throw new PeerUnreachableError(
        `peer ${peer.name}: answer ${answer.status} is not signed by its pinned identity`,
      );
    }
    if (Math.abs(this.options.now() - answerTimestamp) > this.options.clockSkewSeconds) {
      throw new PeerUnreachableError(`peer ${peer.name}: its clock is off by more than the skew`);
    }
    let json: unknown;
    try {
      json = answer.body === '' ? null : JSON.parse(answer.body);
    } catch {
      throw new PeerUnreachableError(`peer ${peer.name}: answer is not JSON`);
    }
    if (answer.status < 200 || answer.status > 299) {
      const error = (json as { error?: { code?: unknown; message?: unknown } } | null)?.error;
      throw new PeerRefusedError(
        answer.status,
        typeof error?.code === 'string' ? error.code : 'error',
        `peer ${peer.name} refused: ${typeof error?.message === 'string' ? error.message.slice(0, 200) : `HTTP ${answer.status}`}`,
      );
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new PeerUnreachableError(
        `peer ${peer.name}: unexpected answer at ${issue?.path.join('.') || 'top level'}: ${issue?.message ?? 'invalid'}`,
      );
    }
    return parsed.data;
  }

  /** Unsigned GET of a public document (the descriptor, which carries its own signature). */
  async fetchPublic(path: string): Promise<string> {
    const answer = await this.send('GET', path, '', {});
    if (answer.status !== 200) {
      throw new PeerUnreachableError(
        `peer ${this.options.peer.name}: ${path}: HTTP ${answer.status}`,
      );
    }
    return answer.body;
  }

  private send(
    method: string,
    path: string,
    body: string,
    headers: Record<string, string>,
  ): Promise<{
    status: number;
    headers: Record<string, string | string[] | undefined>;
    body: string;
  }> {
    const { peer, timeoutMs, agent } = this.options;
    const url = new URL(path, peer.url);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(
        url,
        {
          method,
          headers: {
            ...headers,
            ...(body !== '' ? { 'content-type': 'application/json' } : {}),
            'content-length': Buffer.byteLength(body),
          },
          ...(agent ? { agent } : {}),
          timeout: timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_PEER_BODY_BYTES) {
              req.destroy(new PeerUnreachableError(`peer ${peer.name}: answer too large`));
              return;
            }
            chunks.push(chunk);
          });
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: Buffer.concat(chunks).toString('utf8'),
            }),
          );
          res.on('error', (err) => reject(unreachable(peer.name, err)));
        },
      );
      req.on('timeout', () =>
        req.destroy(new PeerUnreachableError(`peer ${peer.name}: no answer in ${timeoutMs} ms`)),
      );
      req.on('error', (err) => reject(unreachable(peer.name, err)));
      req.end(body);
    });
  }
}

/**
 * The peer answers a request it could not authenticate without a signature (docs/design.md §7),
 * so nothing in such an answer is proven to come from it. A 401 is still read as a refusal
 * (36 to the client at a backup: refusing is the safe side, and the likely cause is a
 * configuration to fix, told in `lastError`); a 429 (it is shedding unauthenticated load)
 * and anything else as no answer.
 */
function unsignedAnswer(
  name: string,
  answer: { status: number; body: string },
): PeerRefusedError | PeerUnreachableError {
  if (answer.status === 429) {
    return new PeerUnreachableError(
      `peer ${name}: over its rate of unauthenticated requests (429)`,
    );
  }
  if (answer.status !== 401) {
    return new PeerUnreachableError(
      `peer ${name}: answer ${answer.status} is not signed by its pinned identity`,
    );
  }
  let code = 'unauthenticated';
  try {
    const parsed = peerErrorBody.safeParse(JSON.parse(answer.body));
    if (parsed.success) code = parsed.data.error.code;
  } catch {
    // Not JSON: the code stays generic.
  }
  return new PeerRefusedError(
    401,
    code,
    `peer ${name} did not authenticate our request (${code}, unsigned answer): ` +
      'check that it lists this relay with our identity, and both clocks',
  );
}

function unreachable(name: string, err: unknown): PeerUnreachableError {
  if (err instanceof PeerUnreachableError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  return new PeerUnreachableError(`peer ${name}: unreachable (${code ?? String(err)})`);
}
