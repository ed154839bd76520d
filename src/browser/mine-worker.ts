import { mine } from '../client/miner-worker.js';
import { useKernelModule } from './shims/load-wasm.js';
import type { PageToWorker, WorkerToPage } from './worker-messages.js';

/**
 * A mining worker of the miner page (bundled as dist/browser/mine-worker.js). It runs the
 * CLI's own task body, `mine` from src/client/miner-worker.ts, over the same WebAssembly
 * kernels (wasm/*.wasm, fetched from the relay): stop, hash counts and the duty cycle go
 * through the shared control block exactly as in a worker thread.
 */

function post(message: WorkerToPage): void {
  self.postMessage(message);
}

async function load(message: Extract<PageToWorker, { kind: 'load' }>): Promise<void> {
  const response = await fetch(message.url);
  if (!response.ok) throw new Error(`${message.url}: HTTP ${response.status}`);
  useKernelModule(message.algorithm, await WebAssembly.compile(await response.arrayBuffer()));
}

self.addEventListener('message', (event: MessageEvent<PageToWorker>) => {
  const message = event.data;
  if (message.kind === 'load') {
    load(message).then(
      () => post({ kind: 'loaded' }),
      (err: unknown) => post({ kind: 'failed', message: String(err) }),
    );
    return;
  }
  try {
    const port = { postMessage: (found: { nonce: number }) => post({ kind: 'nonce', ...found }) };
    post({ kind: 'done', result: mine({ ...message.task, port }) });
  } catch (err) {
    post({ kind: 'failed', message: err instanceof Error ? err.message : String(err) });
  }
});
