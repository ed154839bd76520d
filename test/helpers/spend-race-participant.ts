import { parentPort } from 'node:worker_threads';
import { type FromParticipant, prepareRace, type ToParticipant } from './spend-race.js';

/**
 * One racer of test/helpers/spend-race.ts, as a worker thread or a child process: set up
 * on 'setup', answer 'ready', race on 'go', answer 'done'. The parent ends it after reading
 * the answer (leaving first could drop an unsent IPC message).
 */

const send = (message: FromParticipant): void => {
  if (parentPort) parentPort.postMessage(message);
  else process.send?.(message);
};

let prepared: ReturnType<typeof prepareRace> | null = null;

async function onMessage(message: ToParticipant): Promise<void> {
  try {
    if (message.type === 'setup') {
      prepared = prepareRace(message.setup);
      send({ type: 'ready' });
    } else if (prepared) {
      const result = await prepared.go(message.barrier);
      await prepared.close();
      send({ type: 'done', result });
    }
  } catch (err) {
    send({ type: 'error', message: err instanceof Error ? err.message : String(err) });
  }
}

if (parentPort) parentPort.on('message', (m: ToParticipant) => void onMessage(m));
else process.on('message', (m) => void onMessage(m as ToParticipant));
