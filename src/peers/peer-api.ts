import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { type Logger, silentLogger } from '../log.js';
import {
  checkClock,
  HEADER_NONCE,
  HEADER_PEER,
  HEADER_SIGNATURE,
  HEADER_TIMESTAMP,
  PeerAuthError,
  type PeerSigner,
  parseRequestHeaders,
  ReplayGuard,
  requestSigningBytes,
  responseSigningBytes,
  sign,
  verifySigned,
} from './peer-auth.js';
import { MAX_PEER_BODY_BYTES } from './peer-client.js';
import {
  PEER_PREFIX,
  paymentRequest,
  reserveRequest,
  settleRequest,
  spentQuery,
  type PeerErrorBody,
} from './peer-messages.js';
import type { PeerConfig } from './peer-config.js';
import { PeerApiError, type PeerHandlers } from './peer-handlers.js';

/**
 * The peer API (`/v1/peer/*`, docs/design.md §7) on the relay's HTTP port. Every request must be
 * signed by a pinned peer (peer-auth.ts): the sender is looked up first, then the clock, then
 * the signature, and only a correctly signed request spends a slot in the replay cache, so
 * forged traffic cannot evict real nonces. Every answer, refusals included, is signed by our
 * identity and bound to the request's nonce. The body is hashed exactly as received, so this
 * scope parses JSON itself after the signature check.
 */

export interface PeerApiOptions {
  /** Who may ask: the configured peers, by identity. */
  peers: { peerByIdentity(identity: string): PeerConfig | undefined };
  handlers: PeerHandlers;
  identity: PeerSigner;
  clockSkewSeconds: number;
  now?: () => number;
  logger?: Logger;
}

interface Authenticated {
  peer: PeerConfig;
  nonce: string;
  body: unknown;
}

const AUTH_STATUS: Record<PeerAuthError['code'], number> = {
  missing_headers: 401,
  unknown_peer: 401,
  stale_timestamp: 401,
  bad_signature: 401,
  replay: 401,
  replay_cache_full: 503,
};

export function registerPeerApi(app: FastifyInstance, options: PeerApiOptions): void {
  const now = options.now ?? (() => Date.now() / 1000);
  const log = options.logger ?? silentLogger;
  const replays = new ReplayGuard(options.clockSkewSeconds);
  const { peers, handlers, identity } = options;

  const send = (
    reply: FastifyReply,
    status: number,
    payload: unknown,
    to: string,
    requestNonce: string,
  ): FastifyReply => {
    const body = JSON.stringify(payload);
    const timestamp = Math.floor(now());
    const signature = sign(
      identity,
      responseSigningBytes({
        status,
        from: identity.publicKeyHex,
        to,
        requestNonce,
        timestamp,
        body,
      }),
    );
    return reply
      .code(status)
      .header('content-type', 'application/json; charset=utf-8')
      .header(HEADER_TIMESTAMP, String(timestamp))
      .header(HEADER_SIGNATURE, signature)
      .send(body);
  };

  const refuse = (
    reply: FastifyReply,
    status: number,
    code: string,
    message: string,
    to: string,
    nonce: string,
  ) => send(reply, status, { error: { code, message } } satisfies PeerErrorBody, to, nonce);

  /** Who is asking, proven; or a signed refusal already sent (null). */
  const authenticate = (request: FastifyRequest, reply: FastifyReply): Authenticated | null => {
    const header = (name: string) => {
      const value = request.headers[name];
      return typeof value === 'string' ? value : undefined;
    };
    const claimedPeer = header(HEADER_PEER) ?? '';
    const claimedNonce = header(HEADER_NONCE) ?? '';
    const raw = typeof request.body === 'string' ? request.body : '';
    try {
      const signed = parseRequestHeaders(header);
      const peer = peers.peerByIdentity(signed.peer);
      if (!peer) throw new PeerAuthError('unknown_peer', 'not a configured peer of this relay');
      const at = now();
      checkClock(signed.timestamp, at, options.clockSkewSeconds);
      const bytes = requestSigningBytes({
        method: request.method,
        path: request.url,
        to: identity.publicKeyHex,
        from: signed.peer,
        timestamp: signed.timestamp,
        nonce: signed.nonce,
        body: raw,
      });
      if (!verifySigned(signed.peer, bytes, signed.signature)) {
        throw new PeerAuthError('bad_signature', 'signature does not verify with the pinned key');
      }
      replays.use(signed.peer, signed.nonce, signed.timestamp, at);
      let body: unknown = undefined;
      if (raw !== '') {
        try {
          body = JSON.parse(raw);
        } catch {
          refuse(reply, 400, 'bad_request', 'body is not JSON', signed.peer, signed.nonce);
          return null;
        }
      }
      return { peer, nonce: signed.nonce, body };
    } catch (err) {
      if (!(err instanceof PeerAuthError)) throw err;
      // Count, never the address: the relay does not record who talks to it.
      log.warn({ code: err.code }, 'peer request refused');
      refuse(reply, AUTH_STATUS[err.code], err.code, err.message, claimedPeer, claimedNonce);
      return null;
    }
  };

  /** One route: authenticate, validate the input with `schema`, run, sign the answer. */
  const route = <S extends z.ZodType>(
    scope: FastifyInstance,
    method: 'GET' | 'POST',
    path: string,
    schema: S,
    input: (auth: Authenticated, request: FastifyRequest) => unknown,
    handle: (peer: PeerConfig, value: z.output<S>) => unknown,
  ) => {
    scope.route({
      method,
      url: path,
      handler: async (request, reply) => {
        const auth = authenticate(request, reply);
        if (!auth) return reply;
        const parsed = schema.safeParse(input(auth, request));
        if (!parsed.success) {
          const issue = parsed.error.issues[0];
          return refuse(
            reply,
            400,
            'bad_request',
            `${issue?.path.join('.') || 'body'}: ${issue?.message ?? 'invalid'}`,
            auth.peer.identity,
            auth.nonce,
          );
        }
        try {
          return send(reply, 200, handle(auth.peer, parsed.data), auth.peer.identity, auth.nonce);
        } catch (err) {
          if (err instanceof PeerApiError) {
            return refuse(reply, err.status, err.code, err.message, auth.peer.identity, auth.nonce);
          }
          log.error({ err: String(err), path }, 'peer request failed');
          return refuse(reply, 500, 'internal', 'internal error', auth.peer.identity, auth.nonce);
        }
      },
    });
  };

  // A plain (non-async) plugin with `done`: it registers routes and awaits nothing.
  void app.register(
    (scope, _opts, done) => {
      scope.removeAllContentTypeParsers();
      scope.addContentTypeParser(
        'application/json',
        { parseAs: 'string', bodyLimit: MAX_PEER_BODY_BYTES },
        (_request, body, done) => done(null, body),
      );
      const body = (auth: Authenticated) => auth.body;
      route(scope, 'POST', '/reserve', reserveRequest, body, (peer, value) => ({
        results: handlers.reserve(peer, value.serials),
      }));
      route(
        scope,
        'GET',
        '/spent',
        spentQuery,
        (_auth, request) => request.query,
        (peer, value) => handlers.spentPage(peer, value.after, value.limit),
      );
      route(scope, 'POST', '/payment-request', paymentRequest, body, (peer, value) =>
        handlers.paymentRequest(peer, value),
      );
      route(scope, 'POST', '/settle', settleRequest, body, (peer, value) =>
        handlers.settle(peer, value),
      );
      done();
    },
    { prefix: PEER_PREFIX },
  );
}
