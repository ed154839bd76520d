import { ed25519 } from '@noble/curves/ed25519.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, hexToBytes, utf8ToBytes } from '@noble/hashes/utils.js';

/**
 * Signed peer messages (docs/design.md §7): every request of the peer API, and every answer to
 * a request that authenticated, carries an Ed25519 signature by the sender's relay identity,
 * checked against the identity the receiver pinned in its config. Pure: no clock reads, no
 * I/O; times are passed in.
 *
 * A request signs
 *
 *     "powbridge/peer-request/v1\n" method "\n" path "\n" to "\n" from "\n" timestamp "\n"
 *     nonce "\n" hex(SHA-256(body))
 *
 * and a response signs
 *
 *     "powbridge/peer-response/v1\n" status "\n" from "\n" to "\n" requestNonce "\n"
 *     timestamp "\n" hex(SHA-256(body))
 *
 * `to` binds a request to one recipient, so R2 cannot replay R1's request to R3; the
 * request's nonce in the response binds an answer to its question, so an old "reserved"
 * cannot be replayed as the answer to a new reservation. Distinct prefixes keep a request
 * signature from ever verifying as a response or as a descriptor (which has its own).
 */

export const REQUEST_CONTEXT = 'powbridge/peer-request/v1\n';
export const RESPONSE_CONTEXT = 'powbridge/peer-response/v1\n';

export const HEADER_PEER = 'powbridge-peer';
export const HEADER_TIMESTAMP = 'powbridge-timestamp';
export const HEADER_NONCE = 'powbridge-nonce';
export const HEADER_SIGNATURE = 'powbridge-signature';

const HEX_KEY = /^[0-9a-f]{64}$/;
const HEX_NONCE = /^[0-9a-f]{32}$/;
const HEX_SIGNATURE = /^[0-9a-f]{128}$/;
const TIMESTAMP = /^[0-9]{1,12}$/;

export interface PeerSigner {
  readonly publicKeyHex: string;
  sign(message: Uint8Array): Uint8Array;
}

export interface RequestFields {
  method: string;
  /** Path with query string, exactly as sent. */
  path: string;
  /** Recipient identity (hex). */
  to: string;
  /** Sender identity (hex). */
  from: string;
  /** Unix seconds. */
  timestamp: number;
  /** 16 random bytes, hex. */
  nonce: string;
  body: string;
}

export interface ResponseFields {
  status: number;
  from: string;
  to: string;
  requestNonce: string;
  timestamp: number;
  body: string;
}

const bodyHash = (body: string) => bytesToHex(sha256(utf8ToBytes(body)));

export function requestSigningBytes(r: RequestFields): Uint8Array {
  return utf8ToBytes(
    `${REQUEST_CONTEXT}${r.method.toUpperCase()}\n${r.path}\n${r.to}\n${r.from}\n${r.timestamp}\n${r.nonce}\n${bodyHash(r.body)}`,
  );
}

export function responseSigningBytes(r: ResponseFields): Uint8Array {
  return utf8ToBytes(
    `${RESPONSE_CONTEXT}${r.status}\n${r.from}\n${r.to}\n${r.requestNonce}\n${r.timestamp}\n${bodyHash(r.body)}`,
  );
}

export function sign(signer: PeerSigner, bytes: Uint8Array): string {
  return bytesToHex(signer.sign(bytes));
}

/**
 * The four headers of a signed request: `fields.from` is the identity claimed (normally the
 * signer's own), the signature is over exactly `fields`.
 */
export function signedRequestHeaders(
  signer: PeerSigner,
  fields: RequestFields,
): Record<string, string> {
  return {
    [HEADER_PEER]: fields.from,
    [HEADER_TIMESTAMP]: String(fields.timestamp),
    [HEADER_NONCE]: fields.nonce,
    [HEADER_SIGNATURE]: sign(signer, requestSigningBytes(fields)),
  };
}

/** Strict Ed25519 (RFC 8032, no ZIP-215 leniency); a malformed key or signature is false. */
export function verifySigned(
  publicKeyHex: string,
  bytes: Uint8Array,
  signatureHex: string,
): boolean {
  if (!HEX_KEY.test(publicKeyHex) || !HEX_SIGNATURE.test(signatureHex)) return false;
  try {
    return ed25519.verify(hexToBytes(signatureHex), bytes, hexToBytes(publicKeyHex), {
      zip215: false,
    });
  } catch {
    return false;
  }
}

/** Why a peer message was refused; `code` is stable (tests and the peer's logs use it). */
export type PeerAuthCode =
  | 'missing_headers'
  | 'unknown_peer'
  | 'stale_timestamp'
  | 'bad_signature'
  | 'replay'
  | 'replay_cache_full';

export class PeerAuthError extends Error {
  override name = 'PeerAuthError';
  constructor(
    readonly code: PeerAuthCode,
    message: string,
  ) {
    super(message);
  }
}

export interface SignedHeaders {
  peer: string;
  timestamp: number;
  nonce: string;
  signature: string;
}

/** Shape-check the four request headers (before any lookup or crypto). */
export function parseRequestHeaders(get: (name: string) => string | undefined): SignedHeaders {
  const peer = get(HEADER_PEER);
  const timestamp = get(HEADER_TIMESTAMP);
  const nonce = get(HEADER_NONCE);
  const signature = get(HEADER_SIGNATURE);
  if (
    peer === undefined ||
    timestamp === undefined ||
    nonce === undefined ||
    signature === undefined
  ) {
    throw new PeerAuthError(
      'missing_headers',
      `peer requests need the ${HEADER_PEER}, ${HEADER_TIMESTAMP}, ${HEADER_NONCE} and ${HEADER_SIGNATURE} headers`,
    );
  }
  if (!HEX_KEY.test(peer)) throw new PeerAuthError('unknown_peer', `${HEADER_PEER}: not a key`);
  if (!TIMESTAMP.test(timestamp)) {
    throw new PeerAuthError('stale_timestamp', `${HEADER_TIMESTAMP}: expected unix seconds`);
  }
  if (!HEX_NONCE.test(nonce)) {
    throw new PeerAuthError('missing_headers', `${HEADER_NONCE}: expected 16 bytes of hex`);
  }
  if (!HEX_SIGNATURE.test(signature)) {
    throw new PeerAuthError('bad_signature', `${HEADER_SIGNATURE}: expected 64 bytes of hex`);
  }
  return { peer, timestamp: Number(timestamp), nonce, signature };
}

export function checkClock(timestamp: number, now: number, skewSeconds: number): void {
  if (Math.abs(now - timestamp) > skewSeconds) {
    throw new PeerAuthError(
      'stale_timestamp',
      `timestamp ${timestamp} is more than ${skewSeconds} s from our clock (${Math.floor(now)})`,
    );
  }
}

/**
 * Nonces seen within the clock window, per sender. A nonce only needs remembering until its
 * timestamp falls out of the window: after that the clock check refuses the message anyway.
 * Bounded: when full of live entries, new requests are refused (retry later) rather than
 * forgetting a live nonce, which would reopen a replay.
 */
export class ReplayGuard {
  private readonly nonces = new Map<string, number>();

  constructor(
    private readonly skewSeconds: number,
    private readonly capacity = 100_000,
  ) {}

  /**
   * Whether (peer, nonce) was used within the window: a cheap look before the signature
   * check. Only `use`, after the signature verified, records a nonce.
   */
  seen(peer: string, nonce: string, now: number): boolean {
    const until = this.nonces.get(`${peer}:${nonce}`);
    return until !== undefined && until >= now;
  }

  /** Record (peer, nonce) as used; throws if it was used within the window. */
  use(peer: string, nonce: string, timestamp: number, now: number): void {
    const key = `${peer}:${nonce}`;
    const until = this.nonces.get(key);
    if (until !== undefined && until >= now) {
      throw new PeerAuthError('replay', 'this request was already received (replayed nonce)');
    }
    if (this.nonces.size >= this.capacity) this.sweep(now);
    if (this.nonces.size >= this.capacity) {
      throw new PeerAuthError('replay_cache_full', 'too many recent peer requests; retry later');
    }
    this.nonces.set(key, timestamp + this.skewSeconds);
  }

  sweep(now: number): void {
    for (const [key, until] of this.nonces) if (until < now) this.nonces.delete(key);
  }

  get size(): number {
    return this.nonces.size;
  }
}
