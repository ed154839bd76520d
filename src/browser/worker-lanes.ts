import type { MineResult, MineTask } from '../client/miner-worker.js';
import type { Algorithm } from '../work/algorithm.js';
import type { PageToWorker, WorkerToPage } from './worker-messages.js';

/**
 * The page's mining workers, one per lane: the browser's counterpart of the CLI's piscina
 * pool (src/client/miner-pool.ts). A lane's worker runs one task at a time; its found nonces
 * and its result come back on the one channel, in order, so every nonce is delivered before
 * the task resolves.
 */

export interface LaneFiles {
  /** The worker bundle, e.g. /mine/mine-worker.js. */
  worker: string;
  /** The kernel for the relay's algorithm, e.g. /mine/sha256d.wasm. */
  kernel: string;
}

export class WorkerLanes {
  private constructor(private readonly workers: Worker[]) {}

  /** Start `threads` workers and have each load the kernel; rejects if any cannot. */
  static async start(
    threads: number,
    algorithm: Algorithm,
    files: LaneFiles,
  ): Promise<WorkerLanes> {
    const workers = Array.from({ length: threads }, () => new Worker(files.worker));
    try {
      await Promise.all(
        workers.map((worker) =>
          exchange(worker, { kind: 'load', algorithm, url: files.kernel }, () => undefined),
        ),
      );
    } catch (err) {
      for (const worker of workers) worker.terminate();
      throw err;
    }
    return new WorkerLanes(workers);
  }

  get threads(): number {
    return this.workers.length;
  }

  run(
    lane: number,
    task: Omit<MineTask, 'port'>,
    onNonce: (nonce: number) => void,
  ): Promise<MineResult> {
    const worker = this.workers[lane];
    if (!worker) return Promise.reject(new RangeError(`no worker for lane ${lane}`));
    return exchange(worker, { kind: 'mine', task }, onNonce).then((result) => {
      if (!result) throw new Error('mining worker answered without a result');
      return result;
    });
  }

  /** End every worker at once (a task still running is cut off; its promise never settles). */
  close(): void {
    for (const worker of this.workers.splice(0)) worker.terminate();
  }
}

/** Post one request and follow the worker's answers until `loaded`, `done` or `failed`. */
function exchange(
  worker: Worker,
  request: PageToWorker,
  onNonce: (nonce: number) => void,
): Promise<MineResult | null> {
  return new Promise((resolve, reject) => {
    const onMessage = (event: MessageEvent<WorkerToPage>): void => {
      const answer = event.data;
      if (answer.kind === 'nonce') {
        onNonce(answer.nonce);
        return;
      }
      worker.removeEventListener('message', onMessage);
      worker.removeEventListener('error', onError);
      if (answer.kind === 'failed') reject(new Error(answer.message));
      else resolve(answer.kind === 'done' ? answer.result : null);
    };
    const onError = (event: ErrorEvent): void => {
      worker.removeEventListener('message', onMessage);
      worker.removeEventListener('error', onError);
      reject(new Error(event.message || 'mining worker failed to start'));
    };
    worker.addEventListener('message', onMessage);
    worker.addEventListener('error', onError);
    worker.postMessage(request);
  });
}
