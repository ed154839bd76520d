import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { type Logger, silentLogger } from '../log.js';
import {
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
  type SignedHeaders,
  verifySigned,
} from './peer-auth.js';
import { PeerApiGuard, type PlainRefusal, type UnauthenticatedReason } from './peer-api-guard.js';
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
 * signed by a pinned peer (peer-auth.ts). The cheap checks come first, before the body is
 * even read: the headers' shape, the sender pinned, the clock, the nonce unused; then, within
 * the guard's budget, the signature; only a correctly signed request spends a slot in the
 * replay cache, so forged traffic cannot evict real nonces. A request that fails any of these
 * gets a plain, unsigned 401 (or 429 over the rate), counted by the guard (peer-api-guard.ts),
 * not logged one by one. Every answer to an authenticated request, refusals included, is
 * signed by our identity and bound to the request's nonce. The body is hashed exactly as
 * received, so this scope parses JSON itself after the signature check.
 */

export interface PeerApiOptions {
  /** Who may ask: the configured peers, by identity. */
  peers: { peerByIdentity(identity: string): PeerConfig | undefined };
  handlers: Pick<PeerHandlers, 'reserve' | 'spentPage' | 'paymentRequest' | 'settle'>;
  identity: PeerSigner;
  clockSkewSeconds: number;
  /** Counts and limits unauthenticated requests; without it one of its own, closed with the app. */
  guard?: PeerApiGuard;
  now?: () => number;
  logger?: Logger;
}

interface Authenticated {
  peer: PeerConfig;
  nonce: string;
  body: unknown;
}

/** What the cheap checks found: a pinned sender and a fresh nonce, not yet proven. */
interface Claim {
  peer: PeerConfig;
  signed: SignedHeaders;
}

type CheapReason = Exclude<UnauthenticatedReason, 'rate_limited'>;

const JSON_TYPE = 'application/json; charset=utf-8';

/** What a plain refusal says: fixed text, so it costs nothing to make and tells nothing new. */
const PLAIN_MESSAGES: Record<UnauthenticatedReason, string> = {
  missing_headers: `peer requests need the ${HEADER_PEER}, ${HEADER_TIMESTAMP}, ${HEADER_NONCE} (16 bytes of hex) and ${HEADER_SIGNATURE} headers`,
  unknown_peer: 'not a configured peer of this relay',
  stale_timestamp: 'timestamp not unix seconds, or further than the clock skew from ours',
  bad_signature: 'signature malformed, or it does not verify with the pinned key',
  replay: 'this request was already received (replayed nonce)',
  rate_limited: 'too many unauthenticated peer requests; retry later',
};

const plainBody = (code: UnauthenticatedReason): string =>
  JSON.stringify({ error: { code, message: PLAIN_MESSAGES[code] } } satisfies PeerErrorBody);

/** The reasons parseRequestHeaders gives are all cheap ones; anything else is a bug. */
function cheapReason(err: unknown): CheapReason {
  if (err instanceof PeerAuthError && err.code !== 'replay_cache_full') return err.code;
  throw err;
}

export function registerPeerApi(app: FastifyInstance, options: PeerApiOptions): void {
  const now = options.now ?? (() => Date.now() / 1000);
  const log = options.logger ?? silentLogger;
  const replays = new ReplayGuard(options.clockSkewSeconds);
  const { peers, handlers, identity, clockSkewSeconds } = options;
  const limits = options.guard ?? ownGuard(app, now, log);
  const claims = new WeakMap<FastifyRequest, Claim>();

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
      .header('content-type', JSON_TYPE)
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

  /** Unsigned: whoever sent it has not shown it is a peer, so it gets no work done for it. */
  const refusePlain = (reply: FastifyReply, refusal: PlainRefusal): FastifyReply => {
    if (refusal.status === 429) {
      return reply
        .code(429)
        .header('content-type', JSON_TYPE)
        .header('retry-after', String(refusal.retryAfterSeconds))
        .send(plainBody('rate_limited'));
    }
    return reply.code(401).header('content-type', JSON_TYPE).send(plainBody(refusal.reason));
  };

  /** The checks that cost no crypto, in order: headers, sender pinned, clock, nonce unused. */
  const claimOf = (request: FastifyRequest): Claim | CheapReason => {
    let signed: SignedHeaders;
    try {
      signed = parseRequestHeaders((name) => {
        const value = request.headers[name];
        return typeof value === 'string' ? value : undefined;
      });
    } catch (err) {
      return cheapReason(err);
    }
    const peer = peers.peerByIdentity(signed.peer);
    if (!peer) return 'unknown_peer';
    const at = now();
    if (Math.abs(at - signed.timestamp) > clockSkewSeconds) return 'stale_timestamp';
    if (replays.seen(signed.peer, signed.nonce, at)) return 'replay';
    return { peer, signed };
  };

  /** Who is asking, proven; or a refusal already sent (null). */
  const authenticate = (request: FastifyRequest, reply: FastifyReply): Authenticated | null => {
    const claim = claims.get(request);
    if (!claim) throw new Error('peer API: a route was reached without the request checks');
    const { peer, signed } = claim;
    const raw = typeof request.body === 'string' ? request.body : '';
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
      refusePlain(reply, limits.signatureFailed());
      return null;
    }
    try {
      replays.use(signed.peer, signed.nonce, signed.timestamp, now());
    } catch (err) {
      if (!(err instanceof PeerAuthError)) throw err;
      // The same nonce twice in flight: the second is a replay, however well signed.
      if (err.code === 'replay') refusePlain(reply, limits.refuse('replay'));
      else refuse(reply, 503, err.code, err.message, signed.peer, signed.nonce);
      return null;
    }
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
  };

  /** One route: authenticate, validate the input with `schema`, run, sign the answer. */
  const route = <S extends z.ZodType>(
    scope: FastifyInstance,
    method: 'GET' | 'POST',
    path: string,
    schema: S,
    input: (auth: Authenticated, request: FastifyRequest) => unknown,
    handle: (peer: PeerConfig, value: z.output<S>) => Promise<unknown>,
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
          const answer = await handle(auth.peer, parsed.data);
          return send(reply, 200, answer, auth.peer.identity, auth.nonce);
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
      // Before the body is read: a refused request is not worth reading 2 MiB of.
      scope.addHook('onRequest', async (request, reply) => {
        const claim = claimOf(request);
        if (typeof claim === 'string') return refusePlain(reply, limits.refuse(claim));
        const overRate = limits.mayVerify();
        if (overRate) return refusePlain(reply, overRate);
        claims.set(request, claim);
        return undefined;
      });
      scope.removeAllContentTypeParsers();
      scope.addContentTypeParser(
        'application/json',
        { parseAs: 'string', bodyLimit: MAX_PEER_BODY_BYTES },
        (_request, body, done) => done(null, body),
      );
      const body = (auth: Authenticated) => auth.body;
      route(scope, 'POST', '/reserve', reserveRequest, body, async (peer, value) => ({
        results: await handlers.reserve(peer, value.serials),
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

/** A guard for an API registered without one (tests): its summary timer stops with the app. */
function ownGuard(app: FastifyInstance, now: () => number, logger: Logger): PeerApiGuard {
  const guard = new PeerApiGuard({ now, logger });
  app.addHook('onClose', (_app, done) => {
    guard.close();
    done();
  });
  return guard;
}
