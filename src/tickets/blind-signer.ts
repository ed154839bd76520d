import { constants, privateDecrypt, publicEncrypt } from 'node:crypto';
import { join } from 'node:path';
import { Piscina } from 'piscina';
import { packageRoot } from '../work/package-root.js';
import { TicketFormatError } from './group.js';
import {
  bigIntToBytes,
  bytesToBigInt,
  type DerivedKey,
  MODULUS_BYTES,
  type RsaPrivateKey,
  RsaSigner,
  SigningFailure,
  ticketInfoV2,
} from './rsa-scheme.js';
import { workerExecArgv } from '../lib/worker-exec-argv.js';

/**
 * The relay's RSA BlindSign off the event loop (docs/design.md §6.5): requests are grouped per
 * (key, day) on the main thread and signed in batches by worker threads, each batch checked
 * with the public operation before any signature of it is returned.
 */

export interface BlindSigner {
  /**
   * blind_sig = blindedMsg^d' mod n under (key, day)'s derived key, checked with the public
   * operation before it is returned. Rejects SigningFailure (from rsa-scheme.ts) if the check
   * fails, TicketFormatError on a bad block, BlindSignerBusy when its queue is full.
   */
  sign(key: RsaPrivateKey, day: number, blindedMsg: Uint8Array): Promise<Uint8Array>;
  close(): Promise<void>;
}

export class BlindSignerBusy extends Error {
  override name = 'BlindSignerBusy';
}

const MAX_CACHED_KEYS = 4;
const DEFAULT_MAX_QUEUE = 4096;
/** Large enough to share one check among many signatures, small enough to keep latency low. */
const DEFAULT_MAX_BATCH = 32;
const closedError = () => new Error('blind signer: closed');

// ---- signing a batch (the worker's side) ------------------------------------------------------

/** The two raw RSA operations under a derived key; replaceable so tests can inject a fault. */
export interface RsaOps {
  /** blinded^d' mod n: node:crypto, with CRT. */
  private(derived: DerivedKey, block: Uint8Array): Uint8Array;
  /** signature^e' mod n. */
  public(derived: DerivedKey, block: Uint8Array): Uint8Array;
}

const NO_PADDING = constants.RSA_NO_PADDING;
export const nodeRsaOps: RsaOps = {
  private: (derived, block) =>
    new Uint8Array(privateDecrypt({ key: derived.privateKey, padding: NO_PADDING }, block)),
  public: (derived, block) =>
    new Uint8Array(publicEncrypt({ key: derived.publicKey, padding: NO_PADDING }, block)),
};

/** Per message: its checked blind signature, or null where the check failed (SigningFailure). */
export type SignResult = (Uint8Array | null)[];

export interface SignTask {
  key: RsaPrivateKey;
  day: number;
  blindedMsgs: Uint8Array[];
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a).equals(Buffer.from(b));
}

/**
 * Signs blinded messages under one (key, day) and checks every signature before it is released
 * (the draft's BlindSign steps 4–5: a faulty CRT half reveals a factor of n).
 *
 * Batch screening (docs/design.md §6.5): all signatures of a batch share e', so instead of one
 * public operation each, one checks (∏ s_i)^e' ≡ ∏ m_i (mod n), the products by BigInt. On
 * units x ↦ x^e' is a permutation, so if every m_i is a unit and one s_j is wrong, the two
 * sides differ. The message 0 would zero both products and hide any fault, so it is checked
 * alone; any other non-unit shares a factor with n, so only someone who already knows the
 * factorization can send one (testing m mod p here would time a secret against client input).
 * When the screen fails, each signature is checked on its own and only those that fail are
 * withheld. A batch of one is the plain check. Nothing here computes with p or q.
 */
export function signBatch(
  key: RsaPrivateKey,
  derived: DerivedKey,
  blindedMsgs: readonly Uint8Array[],
  ops: RsaOps = nodeRsaOps,
): SignResult {
  const { n } = key;
  const sigs = blindedMsgs.map((m) => ops.private(derived, m));
  const checkAlone = (i: number): boolean => {
    const [m, s] = [blindedMsgs[i], sigs[i]];
    if (m === undefined || s === undefined || s.length !== MODULUS_BYTES) return false;
    try {
      return sameBytes(ops.public(derived, s), m);
    } catch {
      return false; // e.g. a faulty s ≥ n, which the public operation refuses
    }
  };
  const screened: number[] = [];
  const alone: number[] = [];
  const values = blindedMsgs.map(bytesToBigInt);
  values.forEach((m, i) => (m !== 0n ? screened : alone).push(i));
  const good = new Array<boolean>(sigs.length).fill(false);
  if (screened.length > 1 && screen(n, derived, ops, screened, values, sigs)) {
    for (const i of screened) good[i] = true;
  } else {
    alone.push(...screened);
  }
  for (const i of alone) good[i] = checkAlone(i);
  return sigs.map((s, i) => (good[i] === true ? s : null));
}

/** (∏ s_i)^e' == ∏ m_i (mod n) over `indices`: one public operation for the lot. */
function screen(
  n: bigint,
  derived: DerivedKey,
  ops: RsaOps,
  indices: readonly number[],
  messages: readonly bigint[],
  sigs: readonly Uint8Array[],
): boolean {
  let sigProduct = 1n;
  let msgProduct = 1n;
  for (const i of indices) {
    const sig = sigs[i];
    if (sig === undefined || sig.length !== MODULUS_BYTES) return false;
    const s = bytesToBigInt(sig);
    if (s >= n) return false;
    sigProduct = (sigProduct * s) % n;
    msgProduct = (msgProduct * (messages[i] ?? 0n)) % n;
  }
  try {
    const back = ops.public(derived, bigIntToBytes(sigProduct, MODULUS_BYTES));
    return sameBytes(back, bigIntToBytes(msgProduct, MODULUS_BYTES));
  } catch {
    return false;
  }
}

/** One RsaSigner (and so one per-day derived key cache) per master key, a few keys at most. */
class SignerCache {
  private readonly signers = new Map<string, RsaSigner>();

  get(key: RsaPrivateKey): RsaSigner {
    const id = Buffer.from(key.keyId).toString('hex');
    let signer = this.signers.get(id);
    if (signer?.key.n !== key.n) {
      signer = new RsaSigner(key);
      this.signers.delete(id);
      this.signers.set(id, signer);
      if (this.signers.size > MAX_CACHED_KEYS) {
        const oldest = this.signers.keys().next().value;
        if (oldest !== undefined) this.signers.delete(oldest);
      }
    }
    return signer;
  }
}

/** What a worker thread runs: the day's key derived once per (key, day) and kept. */
export class BatchSigner {
  private readonly signers = new SignerCache();

  constructor(private readonly ops: RsaOps = nodeRsaOps) {}

  sign(task: SignTask): SignResult {
    const derived = this.signers.get(task.key).derived(task.day);
    return signBatch(task.key, derived, task.blindedMsgs, this.ops);
  }
}

// ---- the main thread's side -------------------------------------------------------------------

/** RsaSigner on the calling thread, one signature and one check at a time (tests, fallback). */
export function inlineBlindSigner(): BlindSigner {
  const signers = new SignerCache();
  let closed = false;
  return {
    sign(key, day, blindedMsg) {
      if (closed) return Promise.reject(closedError());
      try {
        return Promise.resolve(signers.get(key).sign(day, blindedMsg));
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

/** The cheap checks, before a request may wait: a bad block never reaches a worker. */
function checkRequest(key: RsaPrivateKey, day: number, blindedMsg: Uint8Array): void {
  ticketInfoV2(day); // throws TicketFormatError unless day is a uint32
  if (!(blindedMsg instanceof Uint8Array) || blindedMsg.length !== MODULUS_BYTES) {
    throw new TicketFormatError(`rsa: blinded message must be ${MODULUS_BYTES} bytes`);
  }
  if (bytesToBigInt(blindedMsg) >= key.n) {
    throw new TicketFormatError('rsa: blinded message out of range');
  }
}

interface Waiting {
  blindedMsg: Uint8Array;
  resolve: (blindSig: Uint8Array) => void;
  reject: (err: Error) => void;
}

interface Group {
  key: RsaPrivateKey;
  day: number;
  waiting: Waiting[];
}

export interface BatchingOptions {
  /** Batches signed at once (the worker threads). */
  concurrency: number;
  /** Signatures waiting for a worker; beyond it sign() rejects BlindSignerBusy at once. */
  maxQueue?: number;
  maxBatch?: number;
  /** Stops whatever runs the batches (the thread pool). */
  stop?: () => Promise<void>;
}

function isSignResult(x: unknown, length: number): x is SignResult {
  return (
    Array.isArray(x) &&
    x.length === length &&
    x.every((s) => s === null || (s instanceof Uint8Array && s.length === MODULUS_BYTES))
  );
}

/**
 * Collects requests per (key, day) and hands `run` one batch per free worker: whatever is
 * waiting for that (key, day) when a worker frees up, up to maxBatch, so no request waits
 * for a batch to fill. (key, day) groups take turns, so one busy day cannot starve another.
 */
export class BatchingSigner implements BlindSigner {
  private readonly groups = new Map<string, Group>();
  private readonly keyNames = new WeakMap<RsaPrivateKey, string>();
  private readonly maxQueue: number;
  private readonly maxBatch: number;
  private waiting = 0;
  private running = 0;
  private closed = false;

  constructor(
    private readonly run: (task: SignTask) => Promise<unknown>,
    private readonly options: BatchingOptions,
  ) {
    this.maxQueue = options.maxQueue ?? DEFAULT_MAX_QUEUE;
    this.maxBatch = options.maxBatch ?? DEFAULT_MAX_BATCH;
    if (!Number.isInteger(options.concurrency) || options.concurrency < 1) {
      throw new RangeError('blind signer: concurrency must be a positive integer');
    }
    if (!Number.isInteger(this.maxQueue) || this.maxQueue < 1) {
      throw new RangeError('blind signer: maxQueue must be a positive integer');
    }
    if (!Number.isInteger(this.maxBatch) || this.maxBatch < 1) {
      throw new RangeError('blind signer: maxBatch must be a positive integer');
    }
  }

  sign(key: RsaPrivateKey, day: number, blindedMsg: Uint8Array): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(closedError());
    try {
      checkRequest(key, day, blindedMsg);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    if (this.waiting >= this.maxQueue) {
      return Promise.reject(new BlindSignerBusy('blind signer: queue full'));
    }
    const id = `${this.keyName(key)}:${day}`;
    let group = this.groups.get(id);
    if (group === undefined) {
      group = { key, day, waiting: [] };
      this.groups.set(id, group);
    }
    const into = group.waiting;
    const promise = new Promise<Uint8Array>((resolve, reject) => {
      // A copy: the caller may reuse its buffer, and a pooled Buffer would post its whole slab.
      into.push({ blindedMsg: new Uint8Array(blindedMsg), resolve, reject });
    });
    this.waiting += 1;
    this.dispatch();
    return promise;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const group of this.groups.values()) {
      for (const w of group.waiting) w.reject(closedError());
    }
    this.groups.clear();
    this.waiting = 0;
    await this.options.stop?.(); // rejects the batches still running
  }

  /** Requests waiting for a worker (not counting the batches being signed). */
  queued(): number {
    return this.waiting;
  }

  /** Groups are told apart by modulus, not by keyId alone: two keys never share a batch. */
  private keyName(key: RsaPrivateKey): string {
    let name = this.keyNames.get(key);
    if (name === undefined) {
      name = `${Buffer.from(key.keyId).toString('hex')}/${key.n.toString(36)}`;
      this.keyNames.set(key, name);
    }
    return name;
  }

  private dispatch(): void {
    while (!this.closed && this.running < this.options.concurrency) {
      const next = this.groups.entries().next();
      if (next.done === true) return;
      const [id, group] = next.value;
      const batch = group.waiting.splice(0, this.maxBatch);
      // To the back of the line: the (key, day) groups take turns.
      this.groups.delete(id);
      if (group.waiting.length > 0) this.groups.set(id, group);
      this.waiting -= batch.length;
      this.running += 1;
      void this.runBatch(group, batch);
    }
  }

  private async runBatch(group: Group, batch: Waiting[]): Promise<void> {
    try {
      const task: SignTask = {
        key: group.key,
        day: group.day,
        blindedMsgs: batch.map((w) => w.blindedMsg),
      };
      const result = await this.run(task);
      if (!isSignResult(result, batch.length)) throw new Error('blind signer: bad worker reply');
      batch.forEach((w, i) => {
        const blindSig = result[i];
        if (blindSig instanceof Uint8Array) w.resolve(blindSig);
        else w.reject(new SigningFailure('rsa: signing failure'));
      });
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      for (const w of batch) w.reject(error);
    } finally {
      this.running -= 1;
      this.dispatch();
    }
  }
}

/**
 * The relay's signer: `threads` worker threads (dist/workers/rsa-sign.js, so `npm run build`
 * first when running from src/), each signing one batch at a time. `maxBatch: 1` checks every
 * signature alone (the benchmark's baseline for the screening).
 */
export function createBlindSignerPool(
  options: { threads?: number; maxQueue?: number; maxBatch?: number } = {},
): BlindSigner {
  const threads = options.threads ?? 2;
  if (!Number.isInteger(threads) || threads < 1) {
    throw new RangeError('blind signer: threads must be a positive integer');
  }
  const pool = new Piscina({
    filename: join(packageRoot(import.meta.url), 'dist', 'workers', 'rsa-sign.js'),
    execArgv: workerExecArgv(),
    minThreads: threads,
    maxThreads: threads,
  });
  return new BatchingSigner((task) => pool.run(task), {
    concurrency: threads,
    ...(options.maxQueue === undefined ? {} : { maxQueue: options.maxQueue }),
    ...(options.maxBatch === undefined ? {} : { maxBatch: options.maxBatch }),
    stop: () => pool.destroy(),
  });
}
