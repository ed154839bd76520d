import { Writable } from 'node:stream';
import { pino } from 'pino';
import { CircuitClient } from '../../src/client/circuit-client.js';
import { TicketClient } from '../../src/client/ticket-client.js';
import type { JobParams, TicketTerms } from '../../src/protocol/messages.js';
import type { Relay } from '../../src/relay/relay.js';

/**
 * One ticket mined the way a miner earns it, on a test relay (price 1 at the floor
 * difficulty: one share buys it): register, submit a share of the first job, obtain. Only the
 * relay's address is used, so a relay process (test/helpers/relay-process.ts) does too.
 */
export async function mineTicket(
  relay: Pick<Relay, 'url'>,
): Promise<{ ticket: string; terms: TicketTerms }> {
  const miner = await CircuitClient.connect(`${relay.url.replace('http', 'ws')}/v1/circuit`);
  try {
    const jobPromise = new Promise<JobParams>((resolve) => miner.once('job', resolve));
    const session = await miner.request('mining.register', { agent: 'test', mode: 'tickets' });
    const job = await jobPromise;
    await miner.request('mining.submit', {
      jobId: job.jobId,
      extranonce2: '00'.repeat(session.extranonce2Size),
      ntime: job.ntime,
      nonce: '00000000',
    });
    if (!session.ticket) throw new Error('no ticket terms');
    const { ticket } = await new TicketClient(session.ticket).obtain(miner);
    return { ticket, terms: session.ticket };
  } finally {
    await miner.close();
  }
}

/** A pino logger at trace level whose every line is kept, to search the log for secrets. */
export function capturedLog(): { logger: pino.Logger; text: () => string } {
  let log = '';
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      log += chunk.toString();
      done();
    },
  });
  return { logger: pino({ level: 'trace' }, sink), text: () => log };
}
