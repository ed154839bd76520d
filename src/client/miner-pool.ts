import { join } from 'node:path';
import { MessageChannel } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { packageRoot } from '../work/package-root.js';
import type { FoundNonce, MineResult, MineTask } from './miner-worker.js';
import { workerExecArgv } from '../lib/worker-exec-argv.js';

/**
 * The mining threads: a fixed-size piscina pool over the compiled dist/workers/mine.js, one
 * thread per lane (the miner keeps exactly one task per lane in flight, so none queues).
 * A task can run for minutes (a whole nonce range), so found nonces cannot wait for its
 * result: each task gets its own MessageChannel and posts them as they are found.
 */
export interface MinePool {
  /**
   * Run one task; `onNonce` gets each found nonce in the order found, all of them before
   * the promise resolves.
   */
  run(task: Omit<MineTask, 'port'>, onNonce: (nonce: number) => void): Promise<MineResult>;
  /** Live worker threads. */
  readonly threads: number;
  /** Terminate the threads (tasks still running reject). */
  close(): Promise<void>;
}

export function createMinePool(threads: number): MinePool {
  const pool = new Piscina<MineTask, MineResult>({
    filename: join(packageRoot(import.meta.url), 'dist', 'workers', 'mine.js'),
    execArgv: workerExecArgv(),
    minThreads: threads,
    maxThreads: threads,
    maxQueue: threads,
  });
  return {
    async run(task, onNonce) {
      const { port1, port2 } = new MessageChannel();
      let received = 0;
      let expected = Number.POSITIVE_INFINITY;
      let allReceived = (): void => {};
      port1.on('message', (message: FoundNonce) => {
        received += 1;
        onNonce(message.nonce);
        if (received >= expected) allReceived();
      });
      try {
        const result = await pool.run({ ...task, port: port2 }, { transferList: [port2] });
        // The result and the nonces travel on different channels: the result can arrive
        // first, and closing the port then would lose nonces still on their way.
        if (received < result.found) {
          await new Promise<void>((resolve) => {
            expected = result.found;
            allReceived = resolve;
          });
        }
        return result;
      } finally {
        port1.close();
      }
    },
    get threads() {
      return pool.threads.length;
    },
    close: () => pool.destroy(),
  };
}
