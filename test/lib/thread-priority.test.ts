import { readdirSync, readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';

/** The nice value of each thread of this process (Linux /proc), by thread id. */
function niceness(): Map<number, number> {
  const out = new Map<number, number>();
  for (const tid of readdirSync(`/proc/${process.pid}/task`)) {
    const stat = readFileSync(`/proc/${process.pid}/task/${tid}/stat`, 'utf8');
    // Fields after "(comm) ": state is field 3, nice is field 19.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    out.set(Number(tid), Number(fields[16]));
  }
  return out;
}

describe.runIf(process.platform === 'linux')('lowerThreadPriority', () => {
  it('renices the calling worker thread only, not the event loop', async () => {
    const mainBefore = niceness().get(process.pid);
    const module = new URL('../../src/lib/thread-priority.ts', import.meta.url).href;
    const tsx = import.meta.resolve('tsx/esm/api');
    const worker = new Worker(
      `const { parentPort } = require('node:worker_threads');
       import(${JSON.stringify(tsx)})
         .then(({ tsImport }) => tsImport(${JSON.stringify(module)}, ${JSON.stringify(import.meta.url)}))
         .then((m) => {
           const tid = Number(require('node:fs').readlinkSync('/proc/thread-self').split('/').pop());
           parentPort.postMessage({ lowered: m.lowerThreadPriority(7), tid });
           parentPort.once('message', () => process.exit(0));
         });`,
      { eval: true },
    );
    try {
      const { lowered, tid } = await new Promise<{ lowered: boolean; tid: number }>(
        (resolve, reject) => {
          worker.once('message', resolve);
          worker.once('error', reject);
        },
      );
      expect(lowered).toBe(true);
      const nice = niceness();
      expect(nice.get(tid)).toBe(7);
      expect(nice.get(process.pid)).toBe(mainBefore);
    } finally {
      await worker.terminate();
    }
  });
});
