import { parentPort, workerData } from 'node:worker_threads';
import { issuanceOp, verificationOp } from './tickets-ops.js';

/** A worker of bench/tickets.ts: runs one operation for `ms` and reports its count. */
const { kind, ms } = workerData as { kind: 'issue' | 'verify'; ms: number };
const op = kind === 'issue' ? issuanceOp(true) : verificationOp(true);
let n = 0;
const start = performance.now();
while (performance.now() - start < ms) {
  op();
  n++;
}
parentPort?.postMessage({ n, seconds: (performance.now() - start) / 1000 });
