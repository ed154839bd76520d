import type { MineResult, MineTask } from '../client/miner-worker.js';
import type { Algorithm } from '../work/algorithm.js';

/** What the miner page and its mining workers say to each other (one worker per lane). */

export type PageToWorker =
  /** Fetch and compile the kernel from the relay (the files `powbridge mine` uses). */
  | { kind: 'load'; algorithm: Algorithm; url: string }
  /** Run one task: src/client/miner-worker.ts's `mine`, as a CLI worker thread does. */
  | { kind: 'mine'; task: Omit<MineTask, 'port'> };

export type WorkerToPage =
  | { kind: 'loaded' }
  /** A nonce meeting the share target; always posted before its task's `done`. */
  | { kind: 'nonce'; nonce: number }
  | { kind: 'done'; result: MineResult }
  | { kind: 'failed'; message: string };
