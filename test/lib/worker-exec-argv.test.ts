import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { workerExecArgv } from '../../src/lib/worker-exec-argv.js';

/**
 * Our worker pools start their threads without require(esm) (src/lib/worker-exec-argv.ts), so
 * piscina loads their ES-module task files with import(), never through the require(esm) path
 * that aborted a test process in CI.
 */

/** A real task file of ours (an ES module; `npm run build` makes it). */
const TASK_FILE = new URL('../../dist/workers/verify-ticket.js', import.meta.url).pathname;

function requireInWorker(execArgv: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
       try { require(workerData); parentPort.postMessage('loaded'); }
       catch (err) { parentPort.postMessage(String(err.code)); }`,
      { eval: true, execArgv, workerData: TASK_FILE },
    );
    worker.once('message', (message: string) => {
      void worker.terminate();
      resolve(message);
    });
    worker.once('error', reject);
  });
}

describe('worker threads of our pools', () => {
  it("keep the main thread's Node options", () => {
    expect(workerExecArgv().slice(0, process.execArgv.length)).toEqual(process.execArgv);
  });

  it.runIf(process.allowedNodeEnvironmentFlags.has('--experimental-require-module'))(
    'refuse require() of an ES module at once, so piscina imports it',
    async () => {
      expect(workerExecArgv()).toContain('--no-experimental-require-module');
      expect(await requireInWorker(workerExecArgv())).toBe('ERR_REQUIRE_ESM');
      // Without it, this Node loads the ES module through require(esm): the path avoided.
      expect(await requireInWorker([...process.execArgv])).toBe('loaded');
    },
  );
});
