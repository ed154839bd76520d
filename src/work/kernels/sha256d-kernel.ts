import { hashMeetsTarget } from '../target.js';
import type { KernelShare } from './kernel-input.js';
import { checkBytes, checkNonceRange, checkUint32, preFilterWord } from './kernel-input.js';
import type { KernelInstance } from './load-wasm.js';
import { instantiateKernel } from './load-wasm.js';
import { scanInChunks } from './scan-chunks.js';

/**
 * sha256d nonce scanning in WebAssembly (wasm/sha256d.c): the midstate of header bytes
 * 0..63 is computed once per job, four nonces run per SIMD128 vector, and only the hash word
 * the pre-filter needs is computed; candidates are checked here with a full hash. Hashes are
 * in internal (little-endian) byte order, as in src/work/pow.ts.
 */
export interface Sha256dScanner {
  /** Fix header bytes 0..75 (everything but the nonce) for the following scans. */
  setJob(header76: Uint8Array): void;
  /**
   * Nonces in [nonceStart, nonceStart + count) whose hash's most significant 32 bits (as a
   * little-endian 256-bit integer) are <= targetWord, ascending. A superset of the nonces
   * meeting any target whose top word is targetWord; see findShares.
   */
  scan(nonceStart: number, count: number, targetWord: number): number[];
  /** Nonces in the range whose sha256d meets `target`, with their hashes, ascending. */
  findShares(nonceStart: number, count: number, target: bigint): KernelShare[];
}

/**
 * Nonces per call into WebAssembly. Bounded so a long scan is many short calls: V8 swaps in
 * the optimised code of a function only between calls, and the caller stays responsive.
 */
const CHUNK = 1 << 16;

function sha256dExports(kernel: KernelInstance) {
  return {
    header: kernel.fn('sha256d_header')() >>> 0,
    digest: kernel.fn('sha256d_digest')() >>> 0,
    candidates: kernel.fn('sha256d_candidates')() >>> 0,
    setJob: kernel.fn('sha256d_set_job'),
    scan: kernel.fn('sha256d_scan'),
    scanned: kernel.fn('sha256d_scanned'),
    hash: kernel.fn('sha256d_hash'),
  };
}

export function createSha256dScanner(): Sha256dScanner {
  const kernel = instantiateKernel('sha256d');
  const wasm = sha256dExports(kernel);
  const memory = kernel.memory;
  const words = new Uint32Array(memory.buffer);
  const view = new DataView(memory.buffer);
  let hasJob = false;

  function scan(nonceStart: number, count: number, targetWord: number): number[] {
    checkNonceRange(nonceStart, count);
    checkUint32(targetWord, 'targetWord');
    if (!hasJob) throw new Error('sha256d scanner: setJob before scan');
    const found: number[] = [];
    scanInChunks(nonceStart, count, CHUNK, (start, chunk) => {
      const n = wasm.scan(start, chunk, targetWord);
      const first = wasm.candidates >>> 2;
      for (let i = 0; i < n; i++) found.push(words[first + i] as number);
      return wasm.scanned() >>> 0;
    });
    return found;
  }

  return {
    setJob(header76) {
      checkBytes(header76, 76, 'header76');
      memory.set(header76, wasm.header);
      wasm.setJob();
      hasJob = true;
    },
    scan,
    findShares(nonceStart, count, target) {
      const shares: KernelShare[] = [];
      for (const nonce of scan(nonceStart, count, preFilterWord(target))) {
        // The job's bytes 0..75 are still in the header buffer: add the nonce, hash fully.
        view.setUint32(wasm.header + 76, nonce, true);
        wasm.hash();
        const hash = memory.slice(wasm.digest, wasm.digest + 32);
        if (hashMeetsTarget(hash, target)) shares.push({ nonce, hash });
      }
      return shares;
    },
  };
}

let shared: { memory: Uint8Array; wasm: ReturnType<typeof sha256dExports> } | undefined;

/** sha256d of an 80-byte header in WebAssembly, internal (little-endian) byte order. */
export function hashSha256d(header80: Uint8Array): Uint8Array {
  checkBytes(header80, 80, 'header80');
  if (shared === undefined) {
    const kernel = instantiateKernel('sha256d');
    shared = { memory: kernel.memory, wasm: sha256dExports(kernel) };
  }
  shared.memory.set(header80, shared.wasm.header);
  shared.wasm.hash();
  return shared.memory.slice(shared.wasm.digest, shared.wasm.digest + 32);
}
