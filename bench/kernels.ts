import { createHash, scryptSync } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { createSHA256, scrypt as hashWasmScrypt } from 'hash-wasm';
import { instantiateKernel } from '../src/work/kernels/load-wasm.js';
import { createScryptKernel } from '../src/work/kernels/scrypt-kernel.js';
import { createSha256dScanner } from '../src/work/kernels/sha256d-kernel.js';
import type { KernelWorkerReply, KernelWorkerRequest } from './kernels-worker.js';

/**
 * The hashing kernels (wasm/) against the other ways this project could hash, per thread:
 *
 *   sha256d  kernel scan (midstate, 4 nonces per SIMD128 vector, pre-filter word only)
 *            vs node:crypto (two createHash('sha256') per nonce) and hash-wasm (one reused
 *            SHA-256 hasher, two digests per nonce, as src/work/pow.ts does today)
 *   scrypt   kernel, four hashes in the SIMD lanes (the miner's scan) and one hash (the
 *            relay's share check), the diagonal layout with 2, 3 and 4 hashes interleaved,
 *            vs node:crypto scryptSync and hash-wasm scrypt
 *   threads  each kernel in 1 and in 2 worker threads at once (each with its own instance)
 *
 * Every figure is the median of --reps measurements of --slice seconds. The cases of a group
 * take turns slice by slice, so a change in background load hits them alike, and per-thread
 * rates are work per CPU-second of the process (--clock cpu, the default; --clock wall for
 * wall time), which a busy neighbour on a shared machine does not skew. The thread scaling
 * figures are wall-clock rates: that is what a second thread buys. The ratios, all between
 * figures of the same run, are what to compare across machines.
 *
 *   npm run bench -- kernels [--json] [--reps 5] [--slice 1] [--clock cpu|wall]
 */

const { values: args } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    reps: { type: 'string', default: '5' },
    slice: { type: 'string', default: '1' },
    clock: { type: 'string', default: 'cpu' },
  },
});
const REPS = Number(args.reps);
const SLICE_MS = Number(args.slice) * 1000;
if (!Number.isInteger(REPS) || REPS < 1 || !(SLICE_MS > 0)) {
  console.error('kernels: --reps must be a positive integer and --slice a positive number');
  process.exit(2);
}
const JSON_OUT = args.json;
if (args.clock !== 'cpu' && args.clock !== 'wall') {
  console.error('kernels: --clock is cpu or wall');
  process.exit(2);
}
const CPU_CLOCK = args.clock === 'cpu';

/** With --json stdout carries only the JSON lines; the human lines go to stderr. */
const say = (line: string): void => {
  (JSON_OUT ? process.stderr : process.stdout).write(`${line}\n`);
};

interface Figure {
  bench: 'kernels';
  figure: string;
  value: number;
  unit: string;
  baseline: string | null;
  ratio: number | null;
}
function emit(figure: string, value: number, unit: string, baseline?: [string, number]): void {
  if (!JSON_OUT) return;
  const line: Figure = {
    bench: 'kernels',
    figure,
    value: Math.round(value),
    unit,
    baseline: baseline?.[0] ?? null,
    ratio: baseline === undefined ? null : round(value / baseline[1], 3),
  };
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

function round(x: number, digits: number): number {
  return Number(x.toFixed(digits));
}
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1
    ? (s[mid] as number)
    : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}
function human(rate: number): string {
  return rate >= 1e6 ? `${(rate / 1e6).toFixed(2)} M` : `${(rate / 1e3).toFixed(2)} k`;
}
const times = (x: number): string => `${x.toFixed(x < 10 ? 2 : 1)}×`;

/** A case does a unit of work per call and returns how many nonces or hashes it did. */
interface Case {
  id: string;
  label: string;
  step: () => number | Promise<number>;
}

/** CPU time of this process in ms (user + system; the benchmark itself is one thread). */
function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

/**
 * Rate of one case over `ms` of wall time. With the CPU clock (default) the work is divided
 * by the CPU time the process used meanwhile, not the wall time: on a machine shared with
 * other jobs that is the rate of one thread that has a core to itself, and it does not depend
 * on how much of a core the scheduler gave each case.
 */
async function rateFor(c: Case, ms: number): Promise<number> {
  const start = performance.now();
  const cpuStart = cpuMs();
  let done = 0;
  let elapsed = 0;
  do {
    done += await c.step();
    elapsed = performance.now() - start;
  } while (elapsed < ms);
  const used = CPU_CLOCK ? cpuMs() - cpuStart : elapsed;
  return done / (used / 1000);
}

/** Median rate of each case; cases take turns slice by slice, after a warm-up each. */
async function measure(cases: Case[]): Promise<Map<string, number>> {
  for (const c of cases) await rateFor(c, Math.min(300, SLICE_MS)); // V8 tiers up the kernels
  const samples = new Map<string, number[]>(cases.map((c) => [c.id, []]));
  for (let rep = 0; rep < REPS; rep++) {
    for (const c of cases) samples.get(c.id)?.push(await rateFor(c, SLICE_MS));
  }
  return new Map(cases.map((c) => [c.id, median(samples.get(c.id) ?? [])]));
}

const header = new Uint8Array(80).map((_, i) => (i * 197 + 3) & 0xff);
const header76 = header.subarray(0, 76);
const nodeHeader = Buffer.from(header);

// --- sha256d ------------------------------------------------------------------------------

async function sha256dCases(): Promise<Case[]> {
  const scanner = createSha256dScanner();
  scanner.setJob(header76);
  const hasher = await createSHA256();
  let kernelNonce = 0;
  let nonce = 0;
  return [
    {
      id: 'sha256d.kernel',
      label: 'kernel (midstate, 4 lanes, pre-filter)',
      step: () => {
        scanner.scan(kernelNonce, 1 << 18, 0);
        kernelNonce = (kernelNonce + (1 << 18)) % 2 ** 31;
        return 1 << 18;
      },
    },
    {
      id: 'sha256d.node-crypto',
      label: 'node:crypto, 2× createHash per nonce',
      step: () => {
        for (let i = 0; i < 1000; i++) {
          nodeHeader.writeUInt32LE(nonce++ >>> 0, 76);
          const first = createHash('sha256').update(nodeHeader).digest();
          createHash('sha256').update(first).digest();
        }
        return 1000;
      },
    },
    {
      id: 'sha256d.hash-wasm',
      label: 'hash-wasm, reused hasher',
      step: () => {
        for (let i = 0; i < 1000; i++) {
          nodeHeader.writeUInt32LE(nonce++ >>> 0, 76);
          const first = hasher.init().update(nodeHeader).digest('binary');
          hasher.init().update(first).digest('binary');
        }
        return 1000;
      },
    },
  ];
}

// --- scrypt -------------------------------------------------------------------------------

function scryptCases(): Case[] {
  const kernel = createScryptKernel();
  const raw = instantiateKernel('scrypt');
  raw.memory.set(
    new Uint8Array(320).map((_, i) => (i * 7) & 0xff),
    raw.fn('scrypt_headers')(),
  );
  const interleaved = raw.fn('scrypt_hash_interleaved');
  let nonce = 0;
  const nextHeader = (): Buffer => {
    nodeHeader.writeUInt32LE(nonce++ >>> 0, 76);
    return nodeHeader;
  };
  const cases: Case[] = [
    {
      id: 'scrypt.kernel-4way',
      label: 'kernel, 4 lanes (miner scan)',
      step: () => {
        kernel.scan(header76, nonce, 64, 0n);
        nonce = (nonce + 64) % 2 ** 31;
        return 64;
      },
    },
    {
      id: 'scrypt.kernel-1',
      label: 'kernel, one hash (relay check)',
      step: () => {
        kernel.hash(nextHeader());
        return 1;
      },
    },
  ];
  for (const k of [2, 3, 4]) {
    cases.push({
      id: `scrypt.interleaved-${k}`,
      label: `diagonal layout, ${k} interleaved`,
      step: () => {
        interleaved(k);
        return k;
      },
    });
  }
  cases.push(
    {
      id: 'scrypt.node-crypto',
      label: 'node:crypto scryptSync',
      step: () => {
        const h = nextHeader();
        scryptSync(h, h, 32, { N: 1024, r: 1, p: 1 });
        return 1;
      },
    },
    {
      id: 'scrypt.hash-wasm',
      label: 'hash-wasm scrypt',
      step: async () => {
        const h = nextHeader();
        await hashWasmScrypt({
          password: h,
          salt: h,
          costFactor: 1024,
          blockSize: 1,
          parallelism: 1,
          hashLength: 32,
          outputType: 'binary',
        });
        return 1;
      },
    },
  );
  return cases;
}

// --- threads ------------------------------------------------------------------------------

/**
 * A worker running bench/kernels-worker.ts. Node 20 does not hand tsx's loader (--import
 * tsx) to worker threads, so a small script entry loads the TypeScript file through tsx's API.
 */
function startWorker(): Worker {
  const entry = new URL('./kernels-worker.ts', import.meta.url).href;
  const tsx = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsx)}).then(({ tsImport }) => tsImport(${JSON.stringify(entry)}, ${JSON.stringify(import.meta.url)}))`;
  return new Worker(boot, { eval: true });
}
function ask(worker: Worker, request: KernelWorkerRequest): Promise<KernelWorkerReply> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => reject(error);
    worker.once('error', onError);
    worker.once('message', (reply: KernelWorkerReply) => {
      worker.off('error', onError);
      resolve(reply);
    });
    worker.postMessage(request);
  });
}

/**
 * All `workers` run `kernel` at once for `ms`. `wall`: the sum of their rates, what the
 * threads delivered. `perCpu`: their work over the CPU time the process used meanwhile, i.e.
 * the rate per busy core; times the number of threads it is what they would deliver with a
 * core each, which a shared machine cannot always give.
 */
async function threadRates(workers: Worker[], kernel: KernelWorkerRequest['kernel'], ms: number) {
  const cpuStart = cpuMs();
  const replies = await Promise.all(workers.map((w) => ask(w, { kernel, ms })));
  const cpu = cpuMs() - cpuStart;
  return {
    wall: replies.reduce((sum, r) => sum + r.done / (r.ms / 1000), 0),
    perCpu: replies.reduce((sum, r) => sum + r.done, 0) / (cpu / 1000),
  };
}

// --- report -------------------------------------------------------------------------------

function report(
  rates: Map<string, number>,
  unit: string,
  cases: Case[],
  baselines: string[],
  targets: Record<string, Record<string, number>>,
): void {
  const rate = (id: string): number => rates.get(id) ?? Number.NaN;
  const name = (id: string): string => id.split('.')[1] ?? id;
  for (const c of cases) {
    let line = `  ${c.label.padEnd(42)} ${human(rate(c.id)).padStart(9)} ${unit}`;
    if (!baselines.includes(c.id)) {
      baselines.forEach((b) => {
        const ratio = rate(c.id) / rate(b);
        const target = targets[c.id]?.[b];
        line += `   ${times(ratio).padStart(6)} ${name(b)}`;
        if (target !== undefined)
          line += ` (target ≥ ${target}×${ratio >= target ? '' : ', MISSED'})`;
        emit(c.id, rate(c.id), unit, [b, rate(b)]);
      });
    } else {
      emit(c.id, rate(c.id), unit);
    }
    say(line);
  }
}

async function main(): Promise<void> {
  const clock = CPU_CLOCK ? 'per CPU-second' : 'per wall-clock second';
  say(`kernels: Node ${process.versions.node}, median of ${REPS} × ${SLICE_MS / 1000} s, ${clock}`);

  say('sha256d, one thread');
  const shaCases = await sha256dCases();
  report(
    await measure(shaCases),
    'nonces/s',
    shaCases,
    ['sha256d.node-crypto', 'sha256d.hash-wasm'],
    { 'sha256d.kernel': { 'sha256d.node-crypto': 20, 'sha256d.hash-wasm': 10 } },
  );

  say('scrypt N=1024 r=1 p=1, one thread');
  const scCases = scryptCases();
  const scRates = await measure(scCases);
  report(scRates, 'H/s', scCases, ['scrypt.node-crypto', 'scrypt.hash-wasm'], {
    'scrypt.kernel-4way': { 'scrypt.node-crypto': 2.3, 'scrypt.hash-wasm': 6 },
    'scrypt.kernel-1': { 'scrypt.hash-wasm': 2 },
  });
  const lanes = scRates.get('scrypt.kernel-4way') ?? Number.NaN;
  const layouts = [2, 3, 4].map((k) => {
    const id = `scrypt.interleaved-${k}`;
    const rate = scRates.get(id) ?? Number.NaN;
    emit(id, rate, 'H/s', ['scrypt.kernel-4way', lanes]);
    return `${k}: ${times(rate / lanes)}`;
  });
  say(`  diagonal interleaved vs 4 lanes: ${layouts.join(', ')}`);

  say('threads (worker_threads, one kernel instance each)');
  const workers = [startWorker(), startWorker()];
  try {
    for (const kernel of ['sha256d', 'scrypt'] as const) {
      for (const w of workers) await ask(w, { kernel, ms: 300 }); // warm up
      const one: { wall: number; perCpu: number }[] = [];
      const two: { wall: number; perCpu: number }[] = [];
      for (let rep = 0; rep < REPS; rep++) {
        one.push(await threadRates(workers.slice(0, 1), kernel, SLICE_MS));
        two.push(await threadRates(workers, kernel, SLICE_MS));
      }
      const unit = kernel === 'sha256d' ? 'nonces/s' : 'H/s';
      const id = kernel === 'sha256d' ? 'sha256d.kernel' : 'scrypt.kernel-4way';
      const wall1 = median(one.map((r) => r.wall));
      const wall2 = median(two.map((r) => r.wall));
      const cpu1 = median(one.map((r) => r.perCpu));
      const cpu2 = median(two.map((r) => r.perCpu));
      emit(`${id}.1-thread`, wall1, unit);
      emit(`${id}.2-threads`, wall2, unit, [`${id}.1-thread`, wall1]);
      emit(`${id}.1-thread.per-cpu`, cpu1, unit);
      emit(`${id}.2-threads.per-cpu`, 2 * cpu2, unit, [`${id}.1-thread.per-cpu`, cpu1]);
      say(
        `  ${kernel.padEnd(8)} wall clock: 1 thread ${human(wall1)}, 2 threads ${human(wall2)} ${unit}: ${times(wall2 / wall1)}; ` +
          `per CPU-second: ${human(cpu1)} and 2 × ${human(cpu2)}: ${times((2 * cpu2) / cpu1)}`,
      );
    }
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

await main();
