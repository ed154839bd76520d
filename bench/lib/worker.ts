import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * Start a worker thread on a TypeScript file. Node 20 does not hand tsx's loader
 * (--import tsx) to worker threads, so a small eval'd entry loads the file through tsx's API.
 */
export function startTsWorker(file: URL, options: Omit<WorkerOptions, 'eval'> = {}): Worker {
  const tsx = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsx)}).then(({ tsImport }) => tsImport(${JSON.stringify(file.href)}, ${JSON.stringify(import.meta.url)}))`;
  return new Worker(boot, { ...options, eval: true });
}
