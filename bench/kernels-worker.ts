import { performance } from 'node:perf_hooks';
import { parentPort } from 'node:worker_threads';
import { createScryptKernel } from '../src/work/kernels/scrypt-kernel.js';
import { createSha256dScanner } from '../src/work/kernels/sha256d-kernel.js';

/**
 * A worker thread of bench/kernels.ts (not a benchmark on its own): loads its own kernel
 * instances, as each miner thread will, and on request runs one kernel flat out for a given
 * time, answering with the work it did.
 */

export interface KernelWorkerRequest {
  kernel: 'sha256d' | 'scrypt';
  ms: number;
}
export interface KernelWorkerReply {
  /** Nonces (sha256d) or hashes (scrypt) done in `ms` milliseconds of wall time. */
  done: number;
  ms: number;
}

const header = new Uint8Array(80).map((_, i) => (i * 131 + 17) & 0xff);
const header76 = header.subarray(0, 76);
const scanner = createSha256dScanner();
scanner.setJob(header76);
const scrypt = createScryptKernel();
let nonce = 0;

/** Units of work per call: nonces for sha256d, hashes for scrypt. */
const step: Record<KernelWorkerRequest['kernel'], () => number> = {
  sha256d: () => {
    scanner.scan(nonce, 1 << 18, 0);
    nonce = (nonce + (1 << 18)) % 2 ** 31;
    return 1 << 18;
  },
  scrypt: () => {
    scrypt.scan(header76, nonce, 64, 0n);
    nonce = (nonce + 64) % 2 ** 31;
    return 64;
  },
};

parentPort?.on('message', (request: KernelWorkerRequest) => {
  const run = step[request.kernel];
  const start = performance.now();
  let done = 0;
  let elapsed = 0;
  do {
    done += run();
    elapsed = performance.now() - start;
  } while (elapsed < request.ms);
  const reply: KernelWorkerReply = { done, ms: elapsed };
  parentPort?.postMessage(reply);
});
