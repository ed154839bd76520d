import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CircuitClient } from '../../src/client/circuit-client.js';
import { TicketClient } from '../../src/client/ticket-client.js';
import type { JobParams } from '../../src/protocol/messages.js';
import type { Relay } from '../../src/relay/relay.js';
import { ticketMessage } from '../../src/tickets/scheme.js';
import { decodeTicket } from '../../src/tickets/ticket.js';
import { startTestRelay } from '../helpers/test-relay.js';

/**
 * Nothing secret reaches the relay's log, even at trace level: not the identity or ticket
 * key secrets, not a ticket, its x_c or serial, not a grant token, and no client address.
 */

const dir = mkdtempSync(join(tmpdir(), 'powbridge-secrets-'));
let log = '';
let relay: Relay;

beforeAll(async () => {
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      log += chunk.toString();
      done();
    },
  });
  ({ relay } = await startTestRelay({ dataDir: dir, logger: pino({ level: 'trace' }, sink) }));
}, 30_000);

afterAll(async () => {
  await relay?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('relay logs', () => {
  it('hold no secret, ticket, serial, token or client address after issuance and redemption', async () => {
    const url = `${relay.url.replace('http', 'ws')}/v1/circuit`;
    const miner = await CircuitClient.connect(url);
    const jobPromise = new Promise<JobParams>((resolve) => miner.once('job', resolve));
    const session = await miner.request('mining.register', { agent: 'secrets', mode: 'tickets' });
    const job = await jobPromise;
    await miner.request('mining.submit', {
      jobId: job.jobId,
      extranonce2: '00'.repeat(session.extranonce2Size),
      ntime: job.ntime,
      nonce: '00000000',
    });
    if (!session.ticket) throw new Error('no ticket terms');
    const issued = await new TicketClient(session.ticket).obtain(miner);
    await miner.close();
    const fresh = await CircuitClient.connect(url);
    const grant = await fresh.request('ticket.redeem', { ticket: issued.ticket });
    await expect(fresh.request('ticket.redeem', { ticket: issued.ticket })).rejects.toMatchObject({
      code: 32,
    });
    await fresh.request('ticket.redeem', { ticket: 'garbage' }).catch(() => undefined);
    await fresh.close();
    await new Promise((r) => setTimeout(r, 100));

    const keysDir = join(dir, 'keys');
    const secrets = readdirSync(keysDir)
      .filter((f) => f.endsWith('.json'))
      .map(
        (f) =>
          (JSON.parse(readFileSync(join(keysDir, f), 'utf8')) as { secretKey?: string }).secretKey,
      )
      .filter((s): s is string => typeof s === 'string');
    expect(secrets.length).toBeGreaterThanOrEqual(2); // identity + a ticket key
    const ticket = decodeTicket(issued.ticket);
    const forbidden = [
      ...secrets,
      'rpc-secret-pw',
      issued.ticket,
      Buffer.from(ticket.xc).toString('hex'),
      Buffer.from(ticketMessage(ticket.xc)).toString('hex'),
      Buffer.from(ticketMessage(ticket.xc)).toString('base64'),
      grant.token,
    ];
    expect(log.length).toBeGreaterThan(100); // the relay did log at trace level
    for (const value of forbidden) expect(log).not.toContain(value);
    // No client address: the only loopback address in the log is the relay's own URL.
    const loopback = log.split('\n').filter((line) => line.includes('127.0.0.1:'));
    expect(loopback.every((line) => line.includes('relay listening'))).toBe(true);
  });
});
