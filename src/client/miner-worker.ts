import type { MessagePort } from 'node:worker_threads';
import type { Algorithm } from '../work/algorithm.js';
import type { KernelShare } from '../work/kernels/kernel-input.js';
import { createScryptKernel, type ScryptKernel } from '../work/kernels/scrypt-kernel.js';
import { createSha256dScanner, type Sha256dScanner } from '../work/kernels/sha256d-kernel.js';
import {
  addHashes,
  controlViews,
  currentGeneration,
  readDuty,
  sleepUnlessStopped,
} from './miner-control.js';

/**
 * The body of a mining worker thread (workers/mine.ts is its entry): scan one header's nonce
 * range with this thread's WebAssembly kernel until the range is done or the generation in
 * the control block moves on. Synchronous on purpose: the kernel call is the hot loop, and
 * the stop check, the hash counter and the duty-cycle sleep all go through shared memory.
 */

export interface MineTask {
  algorithm: Algorithm;
  /** Which hash counter of the control block this task adds to. */
  lane: number;
  /** The generation the task belongs to; it returns as soon as the control block's differs. */
  generation: number;
  /** Header bytes 0..75: everything but the nonce. */
  header76: Uint8Array;
  /** Share target: a nonce is reported when its PoW hash is <= this. */
  target: bigint;
  control: SharedArrayBuffer;
  /**
   * Found nonces go here as `FoundNonce` messages, in the order found: a worker_threads
   * MessagePort, or the browser miner page's worker posting to its page (src/browser).
   */
  port: Pick<MessagePort, 'postMessage'>;
  /** First nonce (default 0). */
  nonceStart?: number;
  /** One past the last nonce (default 2^32). */
  nonceEnd?: number;
}

export interface FoundNonce {
  nonce: number;
}

export interface MineResult {
  /** 'stopped': the generation moved on; 'done': the whole nonce range was scanned. */
  outcome: 'stopped' | 'done';
  hashes: number;
  /** Messages posted on the port: the main thread waits for this many before closing it. */
  found: number;
}

/**
 * Nonces per kernel call, sized so the stop check runs every few milliseconds: 2^16 sha256d
 * nonces take ~10 ms at ~6.7 M/s; 32 scrypt hashes take ~3 ms at ~11 k/s (a multiple of the
 * kernel's four SIMD lanes).
 */
export const CHUNK: Readonly<Record<Algorithm, number>> = { sha256d: 1 << 14, scrypt: 32 };

const NONCE_SPACE = 2 ** 32;

/** Sleeps shorter than this are carried over: a timed wait costs ~0.1 ms of overhead. */
const MIN_SLEEP_MS = 2;

// One kernel instance per thread, created on the first task that needs it.
let sha256d: Sha256dScanner | undefined;
let scrypt: ScryptKernel | undefined;

type Scan = (nonceStart: number, count: number) => KernelShare[];

function scanner(algorithm: Algorithm, header76: Uint8Array, target: bigint): Scan {
  if (algorithm === 'sha256d') {
    const kernel = (sha256d ??= createSha256dScanner());
    kernel.setJob(header76);
    return (start, count) => kernel.findShares(start, count, target);
  }
  const kernel = (scrypt ??= createScryptKernel());
  return (start, count) => kernel.scan(header76, start, count, target);
}

export function mine(task: MineTask): MineResult {
  const views = controlViews(task.control);
  const scan = scanner(task.algorithm, task.header76, task.target);
  const chunk = CHUNK[task.algorithm];
  const end = task.nonceEnd ?? NONCE_SPACE;
  let nonce = task.nonceStart ?? 0;
  let hashes = 0;
  let found = 0;
  // Sleep owed to the duty cycle, in ms: busy time × (1 − duty) / duty, paid in naps.
  let owed = 0;
  while (nonce < end) {
    if (currentGeneration(views) !== task.generation) return { outcome: 'stopped', hashes, found };
    const count = Math.min(chunk, end - nonce);
    const began = performance.now();
    const shares = scan(nonce, count);
    const busy = performance.now() - began;
    for (const share of shares) {
      task.port.postMessage({ nonce: share.nonce } satisfies FoundNonce);
      found += 1;
    }
    addHashes(views, task.lane, count);
    hashes += count;
    nonce += count;
    const duty = readDuty(views);
    if (duty < 1) {
      owed += (busy * (1 - duty)) / duty;
      if (owed >= MIN_SLEEP_MS) {
        const sleepStart = performance.now();
        sleepUnlessStopped(views, task.generation, owed);
        owed = Math.max(0, owed - (performance.now() - sleepStart));
      }
    }
  }
  return { outcome: 'done', hashes, found };
}
