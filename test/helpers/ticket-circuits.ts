import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CircuitClient } from '../../src/client/circuit-client.js';
import type { JobParams, RegisterResult } from '../../src/protocol/messages.js';
import { CircuitConnector, type CircuitLimits } from '../../src/relay/circuit-connector.js';
import type { TicketService } from '../../src/tickets/service.js';
import { ManualSource } from './manual-source.js';
import { startTestStratifier } from './test-stratifier.js';

/**
 * A circuit connector with a given ticket service on loopback, fed by a ManualSource whose
 * shares are all valid (difficulty floor upstream far above them, so none is forwarded): for
 * tests of the ticket methods over real circuits.
 */

export interface RegisteredCircuit {
  client: CircuitClient;
  session: RegisterResult;
  /** Submit one fresh share; resolves with the relay's answer (the credit). */
  mine: () => Promise<{ accepted: true; credit: number }>;
}

export interface TicketCircuits {
  /** ws://…/v1/circuit */
  readonly url: string;
  /** A circuit that has not registered (closed by close()). */
  connect(): Promise<CircuitClient>;
  registered(mode: 'tickets' | 'donate'): Promise<RegisteredCircuit>;
  close(): Promise<void>;
}

export async function startTicketCircuits(
  tickets: TicketService,
  limits: Partial<CircuitLimits> = {},
): Promise<TicketCircuits> {
  const source = new ManualSource('sha256d');
  const stratifier = await startTestStratifier(source);
  const connector = new CircuitConnector(stratifier, { tickets, limits });
  const server = createServer();
  connector.attach(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/v1/circuit`;
  source.goLive({ difficulty: 1e12 });
  const clients: CircuitClient[] = [];
  const connect = async () => {
    const client = await CircuitClient.connect(url);
    clients.push(client);
    return client;
  };
  return {
    url,
    connect,
    async registered(mode) {
      const client = await connect();
      const jobPromise = new Promise<JobParams>((resolve) => client.once('job', resolve));
      const session = await client.request('mining.register', { agent: 't', mode });
      const job = await jobPromise;
      let nonce = 0;
      const mine = () =>
        client.request('mining.submit', {
          jobId: job.jobId,
          extranonce2: '000000000001',
          ntime: job.ntime,
          nonce: (nonce++).toString(16).padStart(8, '0'),
        });
      return { client, session, mine };
    },
    async close() {
      await Promise.all(clients.splice(0).map((c) => c.close()));
      connector.close();
      stratifier.stop();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
