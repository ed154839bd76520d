import { createHash, scryptSync } from 'node:crypto';
import { createSHA256, scrypt as wasmScrypt } from 'hash-wasm';
import { JobBook } from '../src/relay/job-book.js';
import { checkShare, type ShareClient } from '../src/relay/share-check.js';
import type { Algorithm } from '../src/work/algorithm.js';
import { createPowHasher, type PowHasher } from '../src/work/pow.js';
import { MIN_DIFFICULTY } from '../src/work/target.js';
import { median, benchOptions } from './lib/report.js';

/**
 * Share verification throughput per core (issue 3): the relay's whole check (duplicate key,
 * coinbase, merkle root, header, PoW, target) for distinct shares, with the PoW hash from the
 * project's kernels, hash-wasm and node:crypto in the same run.
 *
 *   npm run bench -- verify [--json] [--reps 5] [--slice 1]
 */

const { report, reps: REPS, sliceMs: SLICE_MS } = benchOptions('verify');

async function hashers(algorithm: Algorithm): Promise<Record<string, PowHasher>> {
  if (algorithm === 'sha256d') {
    const wasm = await createSHA256();
    return {
      kernel: await createPowHasher('sha256d'),
      'hash-wasm': (h) => {
        const first = wasm.init().update(h).digest('binary');
        return Promise.resolve(wasm.init().update(first).digest('binary'));
      },
      'node:crypto': (h) => {
        const first = createHash('sha256').update(h).digest();
        return Promise.resolve(new Uint8Array(createHash('sha256').update(first).digest()));
      },
    };
  }
  const params = { costFactor: 1024, blockSize: 1, parallelism: 1, hashLength: 32 };
  return {
    kernel: await createPowHasher('scrypt'),
    'hash-wasm': (h) => wasmScrypt({ password: h, salt: h, ...params, outputType: 'binary' }),
    'node:crypto': (h) =>
      Promise.resolve(new Uint8Array(scryptSync(h, h, 32, { N: 1024, r: 1, p: 1 }))),
  };
}

/** Distinct shares per second through checkShare with `hasher`, for about SLICE_MS. */
async function sharesPerSecond(
  algorithm: Algorithm,
  hasher: PowHasher,
  newExtranonce2EveryShare = false,
): Promise<number> {
  const book = new JobBook();
  const job = book.add(
    {
      session: 1,
      jobId: 'bench',
      prevhash: '11'.repeat(32),
      coinb1: `01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20${'ab'.repeat(20)}`,
      coinb2: `${'cd'.repeat(40)}ffffffff0100f2052a010000001976a914${'00'.repeat(20)}88ac00000000`,
      merkleBranch: Array.from({ length: 12 }, (_, i) => (i + 16).toString(16).repeat(32)),
      version: '20000000',
      nbits: '1d00ffff',
      ntime: '60000000',
      clean: true,
    },
    { difficulty: 1e12, extranonce1: 'f000000d' },
  );
  const client: ShareClient = {
    registered: true,
    extranonce1: '0001',
    extranonce2Size: 6,
    versionMask: null,
    difficulty: MIN_DIFFICULTY,
    jobSent: () => ({ bookId: job.id, difficulty: MIN_DIFFICULTY }),
  };
  let n = 0;
  const start = performance.now();
  while (performance.now() - start < SLICE_MS) {
    const nonce = (n++).toString(16).padStart(8, '0');
    // Miners scan nonces under one extranonce2 (the relay caches its merkle root); the
    // worst case changes extranonce2 every share so nothing is cached.
    const extranonce2 = newExtranonce2EveryShare ? `0000${nonce}` : '000000000001';
    const verdict = await checkShare(
      client,
      { jobId: job.id, extranonce2, ntime: '60000000', nonce },
      book,
      algorithm,
      hasher,
    );
    if (!verdict.ok) throw new Error(`share refused: ${verdict.message}`);
  }
  return (n * 1000) / (performance.now() - start);
}

async function main(): Promise<void> {
  report.say(
    `verify: Node ${process.versions.node}, median of ${REPS} × ${SLICE_MS / 1000} s, one thread`,
  );
  for (const algorithm of ['sha256d', 'scrypt'] as const) {
    const cases = await hashers(algorithm);
    const worst: number[] = [];
    const samples = new Map<string, number[]>(Object.keys(cases).map((k) => [k, []]));
    // Cases take turns slice by slice so machine noise hits them alike.
    for (let rep = 0; rep < REPS; rep++) {
      for (const [name, hasher] of Object.entries(cases)) {
        samples.get(name)?.push(await sharesPerSecond(algorithm, hasher));
      }
      worst.push(await sharesPerSecond(algorithm, cases.kernel as PowHasher, true));
    }
    const rate = (name: string) => median(samples.get(name) ?? []);
    report.figure(`${algorithm} shares/s hash-wasm`, rate('hash-wasm'), 'shares/s');
    report.figure(`${algorithm} shares/s node:crypto`, rate('node:crypto'), 'shares/s');
    report.figure(`${algorithm} shares/s kernel vs hash-wasm`, rate('kernel'), 'shares/s', [
      `${algorithm} hash-wasm`,
      rate('hash-wasm'),
    ]);
    report.figure(`${algorithm} shares/s kernel vs node:crypto`, rate('kernel'), 'shares/s', [
      `${algorithm} node:crypto`,
      rate('node:crypto'),
    ]);
    report.figure(
      `${algorithm} shares/s kernel, new extranonce2 every share`,
      median(worst),
      'shares/s',
      [`${algorithm} kernel, same extranonce2`, rate('kernel')],
    );
  }
}

await main();
