import { hashMeetsTarget } from '../target.js';
import type { KernelShare } from './kernel-input.js';
import { checkBytes, checkNonceRange, preFilterWord } from './kernel-input.js';
import type { KernelInstance } from './load-wasm.js';
import { instantiateKernel } from './load-wasm.js';
import { scanInChunks } from './scan-chunks.js';

/**
 * scrypt(N=1024, r=1, p=1, dkLen=32) of 80-byte headers (password = salt = header) in
 * WebAssembly (wasm/scrypt.c), with a 128 KiB scratchpad per hash in the instance's memory.
 * `hash4` and `scan` run four headers in the four SIMD128 lanes (the miner); `hash` is one
 * header on its own (the relay's share check). Hashes are in internal (little-endian) byte
 * order, as in src/work/pow.ts.
 */
export interface ScryptKernel {
  /** One 80-byte header -> its 32-byte hash (one hash alone; the relay's share check). */
  hash(header80: Uint8Array): Uint8Array;
  /** Four headers back to back (320 bytes) -> four hashes back to back (128 bytes). */
  hash4(headers: Uint8Array): Uint8Array;
  /** Nonces in [nonceStart, nonceStart + count) whose hash meets `target`, ascending. */
  scan(header76: Uint8Array, nonceStart: number, count: number, target: bigint): KernelShare[];
}

/** Nonces per call into WebAssembly (about 25 ms): keeps calls short, see sha256d-kernel. */
const CHUNK = 256;

function scryptExports(kernel: KernelInstance) {
  return {
    headers: kernel.fn('scrypt_headers')() >>> 0,
    hashes: kernel.fn('scrypt_hashes')() >>> 0,
    candidateNonces: kernel.fn('scrypt_candidate_nonces')() >>> 0,
    candidateHashes: kernel.fn('scrypt_candidate_hashes')() >>> 0,
    hash1: kernel.fn('scrypt_hash1'),
    hash4: kernel.fn('scrypt_hash4'),
    scan: kernel.fn('scrypt_scan'),
    scanned: kernel.fn('scrypt_scanned'),
  };
}

export function createScryptKernel(): ScryptKernel {
  const kernel = instantiateKernel('scrypt');
  const wasm = scryptExports(kernel);
  const memory = kernel.memory;
  const words = new Uint32Array(memory.buffer);

  function hash(header80: Uint8Array): Uint8Array {
    checkBytes(header80, 80, 'header80');
    memory.set(header80, wasm.headers);
    wasm.hash1();
    return memory.slice(wasm.hashes, wasm.hashes + 32);
  }

  return {
    hash,
    hash4(headers) {
      checkBytes(headers, 320, 'headers');
      memory.set(headers, wasm.headers);
      wasm.hash4();
      return memory.slice(wasm.hashes, wasm.hashes + 128);
    },
    scan(header76, nonceStart, count, target) {
      checkBytes(header76, 76, 'header76');
      checkNonceRange(nonceStart, count);
      const targetWord = preFilterWord(target);
      memory.set(header76, wasm.headers);
      const shares: KernelShare[] = [];
      scanInChunks(nonceStart, count, CHUNK, (start, chunk) => {
        const n = wasm.scan(start, chunk, targetWord);
        for (let i = 0; i < n; i++) {
          const at = wasm.candidateHashes + 32 * i;
          const hash = memory.slice(at, at + 32);
          const nonce = words[(wasm.candidateNonces >>> 2) + i] as number;
          if (hashMeetsTarget(hash, target)) shares.push({ nonce, hash });
        }
        return wasm.scanned() >>> 0;
      });
      return shares;
    },
  };
}

let shared: ScryptKernel | undefined;

/** scrypt of one 80-byte header with this thread's shared kernel instance. */
export function hashScrypt(header80: Uint8Array): Uint8Array {
  shared ??= createScryptKernel();
  return shared.hash(header80);
}
