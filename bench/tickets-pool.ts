import { existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { createBlindSignerPool } from '../src/tickets/blind-signer.js';
import type { RsaPrivateKey } from '../src/tickets/rsa-scheme.js';
import { median } from './lib/report.js';

/**
 * RSA issuance through the relay's signer pool for bench/tickets.ts (the compiled worker,
 * dist/workers/rsa-sign.js: `npm run build` first). `inFlight` requests are kept waiting at all
 * times, as on a relay with many circuits issuing at once, so batches form as they would there.
 */

/** Distinct blinded-message-like blocks below the modulus (the signer does not care which). */
export function sampleBlocks(count: number): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => {
    const parts = [0, 1, 2, 3].map((j) => createHash('sha512').update(`${i}/${j}`).digest());
    const block = new Uint8Array(Buffer.concat(parts));
    block[0] = (block[0] ?? 0) & 0x3f;
    return block;
  });
}

export interface PoolRate {
  /** Tickets per wall-clock second. */
  wall: number;
  /** Tickets per CPU-second of the whole process (main thread and workers). */
  cpu: number;
}

/** Median over `reps` slices of `ms`, one pool for all of them. */
export async function poolRate(
  key: RsaPrivateKey,
  day: number,
  options: { threads: number; maxBatch?: number; reps: number; ms: number; inFlight?: number },
): Promise<PoolRate> {
  if (!existsSync(new URL('../dist/workers/rsa-sign.js', import.meta.url))) {
    throw new Error('dist/workers/rsa-sign.js is missing: run `npm run build` first');
  }
  const signer = createBlindSignerPool({
    threads: options.threads,
    ...(options.maxBatch === undefined ? {} : { maxBatch: options.maxBatch }),
  });
  const blocks = sampleBlocks(64);
  try {
    // Warm: every worker derives the day's key once.
    await Promise.all(blocks.map((b) => signer.sign(key, day, b)));
    const slices: PoolRate[] = [];
    for (let rep = 0; rep < options.reps; rep++) {
      slices.push(
        await slice(options.ms, options.inFlight ?? 256, (i) =>
          signer.sign(key, day, blocks[i % blocks.length] ?? new Uint8Array()),
        ),
      );
    }
    return {
      wall: median(slices.map((s) => s.wall)),
      cpu: median(slices.map((s) => s.cpu)),
    };
  } finally {
    await signer.close();
  }
}

/** Keeps `inFlight` callers signing for `ms`; counts what completed. */
async function slice(
  ms: number,
  inFlight: number,
  sign: (i: number) => Promise<Uint8Array>,
): Promise<PoolRate> {
  let done = 0;
  const start = performance.now();
  const cpu0 = process.cpuUsage();
  const caller = async (): Promise<void> => {
    while (performance.now() - start < ms) {
      await sign(done);
      done++;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, caller));
  const seconds = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { wall: done / seconds, cpu: (done * 1e6) / (cpu.user + cpu.system) };
}
