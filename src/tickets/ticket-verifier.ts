import { join } from 'node:path';
import { Piscina } from 'piscina';
import { boundedRunner, QueueFullError } from '../lib/bounded-runner.js';
import { packageRoot } from '../work/package-root.js';
import type { AnyTicket } from './any-ticket.js';
import { encodePoint, type Point } from './group.js';
import { type RsaPublicKey, RsaVerifier } from './rsa-scheme.js';
import {
  InfoPointCache,
  ticketMessage,
  verifySignature,
  type VerifierKey,
  verifierKey,
} from './scheme.js';
import { TICKET_VERSION } from './ticket.js';
import { TICKET_V2_VERSION, ticketMessageV2 } from './ticket-v2.js';
import { workerExecArgv } from '../lib/worker-exec-argv.js';

/**
 * The one expensive step of a redemption, the ticket's signature check (~1 ms: Abe–Okamoto's
 * four scalar multiplications, or RSA-PSS under a day's derived exponent, which is as long as
 * n), moved off the event loop (docs/design.md §6.3): worker threads check, the main thread
 * keeps only the cheap checks, so a flood of forged tickets cannot stall shares, jobs and
 * /healthz. The pool's queue is bounded; a full queue is refused at once (TicketVerifierBusy,
 * which the redeemer answers with 38).
 *
 * Inline and pool run the same SignatureChecker, so their verdicts cannot differ.
 */

/** The key a ticket is checked under: the one we hold for its id, never one it brings. */
export type TicketKey = { scheme: 'ao'; key: VerifierKey } | { scheme: 'rsa'; key: RsaPublicKey };

/** A check as it crosses to a worker: plain data only (no points, no private halves). */
export interface SignatureTask {
  key:
    | { scheme: 'ao'; publicKey: Uint8Array }
    | { scheme: 'rsa'; n: bigint; e: bigint; spki: Uint8Array; keyId: Uint8Array };
  ticket: AnyTicket;
}

export interface TicketVerifier {
  /** Whether `ticket` is signed by `key`; rejects TicketVerifierBusy when the queue is full. */
  verify(key: TicketKey, ticket: AnyTicket): Promise<boolean>;
  close(): Promise<void>;
}

export class TicketVerifierBusy extends Error {
  override name = 'TicketVerifierBusy';
}

/** Keys and their per-day values kept by a checker; a relay holds a handful, peers a few more. */
const MAX_CACHED_KEYS = 64;
/** Checks waiting for a worker beyond those running: the default budget's burst fits twice. */
export const DEFAULT_VERIFY_QUEUE = 256;
const closedError = () => new Error('ticket verifier: closed');

function remember<V>(cache: Map<string, V>, id: string, value: V): V {
  cache.set(id, value);
  if (cache.size > MAX_CACHED_KEYS) {
    const oldest = cache.keys().next().value;
    if (oldest !== undefined) cache.delete(oldest);
  }
  return value;
}

/**
 * The signature check itself, with its caches: the info point per (key, day) for
 * Abe–Okamoto, the derived public key per day for RSA. A ticket of one scheme under a key of
 * the other is a bad signature (false), never an error.
 */
export class SignatureChecker {
  private readonly infoPoints: InfoPointCache;
  private readonly rsaVerifiers = new Map<string, RsaVerifier>();
  private readonly aoKeys = new Map<string, VerifierKey>();

  constructor(options: { infoPoints?: InfoPointCache } = {}) {
    this.infoPoints = options.infoPoints ?? new InfoPointCache();
  }

  check(key: TicketKey, ticket: AnyTicket): boolean {
    if (ticket.version === TICKET_VERSION && key.scheme === 'ao') {
      const { info, z } = this.infoPoints.get(key.key.keyId, ticket.day);
      const message = ticketMessage(ticket.v1.xc);
      return verifySignature(key.key, z, info, message, ticket.v1.signature);
    }
    if (ticket.version === TICKET_V2_VERSION && key.scheme === 'rsa') {
      const { v2 } = ticket;
      const message = ticketMessageV2(key.key.keyId, v2.day, v2.nonce);
      return this.rsaVerifier(key.key).verify(v2.day, message, v2.signature);
    }
    return false;
  }

  /** A task from the main thread: its key rebuilt (once per key), then the same check. */
  checkTask(task: SignatureTask): boolean {
    const { key } = task;
    if (key.scheme === 'rsa') {
      const { n, e, spki, keyId } = key;
      return this.check({ scheme: 'rsa', key: { n, e, spki, keyId } }, task.ticket);
    }
    const id = Buffer.from(key.publicKey).toString('hex');
    const ao = this.aoKeys.get(id) ?? remember(this.aoKeys, id, verifierKey(key.publicKey));
    return this.check({ scheme: 'ao', key: ao }, task.ticket);
  }

  /** One verifier per RSA key (told apart by modulus too): it caches the day's derived key. */
  private rsaVerifier(key: RsaPublicKey): RsaVerifier {
    const id = Buffer.from(key.keyId).toString('hex');
    const verifier = this.rsaVerifiers.get(id);
    if (verifier?.key.n === key.n) return verifier;
    return remember(this.rsaVerifiers, id, new RsaVerifier(key));
  }
}

/** The check on the calling thread (tests, tools, the synchronous baseline). */
export function inlineTicketVerifier(checker = new SignatureChecker()): TicketVerifier {
  let closed = false;
  return {
    verify(key, ticket) {
      if (closed) return Promise.reject(closedError());
      try {
        return Promise.resolve(checker.check(key, ticket));
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
    },
    close() {
      closed = true;
      return Promise.resolve();
    },
  };
}

/** Encoding a ristretto point costs an inverse square root: once per key, not per ticket. */
const encodedKeys = new WeakMap<Point, Uint8Array>();

/** The plain-data form of a check, public halves only (an RSA key may come with p and q). */
export function signatureTask(key: TicketKey, ticket: AnyTicket): SignatureTask {
  if (key.scheme === 'rsa') {
    const { n, e, spki, keyId } = key.key;
    return { key: { scheme: 'rsa', n, e, spki, keyId }, ticket };
  }
  let publicKey = encodedKeys.get(key.key.y);
  if (publicKey === undefined) {
    publicKey = encodePoint(key.key.y);
    encodedKeys.set(key.key.y, publicKey);
  }
  return { key: { scheme: 'ao', publicKey }, ticket };
}

/**
 * Checks through `run` (a worker pool) with at most `threads + maxQueue` in flight; the rest
 * are refused with TicketVerifierBusy at once.
 */
export function queuedTicketVerifier(
  run: (task: SignatureTask) => Promise<unknown>,
  options: { threads: number; maxQueue?: number; stop?: () => Promise<void> },
): TicketVerifier {
  const runner = boundedRunner(run, options.threads + (options.maxQueue ?? DEFAULT_VERIFY_QUEUE));
  let closed = false;
  return {
    async verify(key, ticket) {
      if (closed) throw closedError();
      let verdict: unknown;
      try {
        verdict = await runner.run(signatureTask(key, ticket));
      } catch (err) {
        if (err instanceof QueueFullError)
          throw new TicketVerifierBusy('ticket verifier: queue full');
        throw err;
      }
      if (typeof verdict !== 'boolean') throw new Error('ticket verifier: bad worker reply');
      return verdict;
    },
    async close() {
      if (closed) return;
      closed = true;
      await options.stop?.();
    },
  };
}

/**
 * The relay's verifier: `threads` worker threads running dist/workers/verify-ticket.js (so
 * `npm run build` first when running from src/).
 */
export function createTicketVerifierPool(
  options: { threads?: number; maxQueue?: number } = {},
): TicketVerifier {
  const threads = options.threads ?? 1;
  if (!Number.isInteger(threads) || threads < 1) {
    throw new RangeError('ticket verifier: threads must be a positive integer');
  }
  const maxQueue = options.maxQueue ?? DEFAULT_VERIFY_QUEUE;
  if (!Number.isInteger(maxQueue) || maxQueue < 0) {
    throw new RangeError('ticket verifier: maxQueue must be a non-negative integer');
  }
  const pool = new Piscina({
    filename: join(packageRoot(import.meta.url), 'dist', 'workers', 'verify-ticket.js'),
    execArgv: workerExecArgv(),
    minThreads: threads,
    maxThreads: threads,
    // Our own bound (queuedTicketVerifier) refuses first; this one is a backstop.
    maxQueue: maxQueue + threads,
  });
  return queuedTicketVerifier((task) => pool.run(task), {
    threads,
    maxQueue,
    stop: () => pool.destroy(),
  });
}
