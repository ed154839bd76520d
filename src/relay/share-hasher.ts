import { join } from 'node:path';
import { Piscina } from 'piscina';
import { boundedRunner, QueueFullError } from '../lib/bounded-runner.js';
import { RpcError, RpcErrorCode } from '../protocol/errors.js';
import type { Algorithm } from '../work/algorithm.js';
import { packageRoot } from '../work/package-root.js';
import { createPowHasher, type PowHasher } from '../work/pow.js';
import { workerExecArgv } from '../lib/worker-exec-argv.js';

export interface ShareHasher {
  hash: PowHasher;
  /** Shares refused with 38 because the queue was full, since start. */
  overloaded(): number;
  close(): Promise<void>;
}

/** Shares waiting for a worker beyond those being hashed. */
export const DEFAULT_SHARE_QUEUE = 4096;

/**
 * The PoW hasher the stratifier verifies shares with. sha256d costs about a microsecond and
 * runs inline; scrypt costs ~100 µs+ per hash and would stall every circuit, so it runs in
 * a pool of worker threads (the compiled dist/workers/verify-share.js). The pool's queue is
 * bounded: a share that finds it full is answered 38 with `retryAfter` at once (nothing about
 * it is recorded, so the miner may send it again) instead of growing memory and every wait.
 */
export async function createShareHasher(
  algorithm: Algorithm,
  options: { threads?: number; maxQueue?: number } = {},
): Promise<ShareHasher> {
  if (algorithm === 'sha256d') {
    return {
      hash: await createPowHasher(algorithm),
      overloaded: () => 0,
      close: () => Promise.resolve(),
    };
  }
  const threads = options.threads ?? 1;
  const maxQueue = options.maxQueue ?? DEFAULT_SHARE_QUEUE;
  const pool = new Piscina({
    filename: join(packageRoot(import.meta.url), 'dist', 'workers', 'verify-share.js'),
    execArgv: workerExecArgv(),
    minThreads: threads,
    maxThreads: threads,
    // Our own bound below refuses first; this one is a backstop.
    maxQueue: maxQueue + threads,
    env: { ...process.env, POWBRIDGE_VERIFY_ALGORITHM: algorithm },
  });
  return boundedShareHasher((header) => pool.run(header) as Promise<Uint8Array>, {
    maxPending: threads + maxQueue,
    close: () => pool.destroy(),
  });
}

/** `hash` with at most `maxPending` hashes in flight; beyond that a share gets 38. */
export function boundedShareHasher(
  hash: PowHasher,
  options: { maxPending: number; close: () => Promise<void> },
): ShareHasher {
  const runner = boundedRunner(hash, options.maxPending);
  let shed = 0;
  return {
    hash: async (header) => {
      try {
        return await runner.run(header);
      } catch (err) {
        if (!(err instanceof QueueFullError)) throw err;
        shed += 1;
        throw new RpcError(RpcErrorCode.relayOverloaded, 'relay overloaded, retry the share', {
          retryAfter: 1,
        });
      }
    },
    overloaded: () => shed,
    close: options.close,
  };
}
