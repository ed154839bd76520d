import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { CircuitClient } from '../../src/client/circuit-client.js';
import { TicketClient } from '../../src/client/ticket-client.js';
import type { JobParams } from '../../src/protocol/messages.js';
import type { Relay } from '../../src/relay/relay.js';
import { decodeAnyTicket } from '../../src/tickets/any-ticket.js';
import { ticketMessage } from '../../src/tickets/scheme.js';
import { startTestRelay } from '../helpers/test-relay.js';

/**
 * Nothing secret reaches the relay's log, even at trace level: not the identity or ticket
 * key secrets (a scalar for Abe–Okamoto, the primes for RSA), not a ticket, its x_c, nonce or
 * serial, not a grant token, and no client address. Both ticket schemes.
 */

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** Every secret field of every key file in the data dir. */
function keySecrets(dir: string): string[] {
  const keysDir = join(dir, 'keys');
  return readdirSync(keysDir)
    .filter((f) => f.endsWith('.json'))
    .flatMap((f) => {
      const file = JSON.parse(readFileSync(join(keysDir, f), 'utf8')) as Record<string, unknown>;
      return [file.secretKey, file.p, file.q].filter((s): s is string => typeof s === 'string');
    });
}

describe.each(['rsa', 'ao'] as const)('relay logs, tickets.scheme = %s', (scheme) => {
  it('hold no secret, ticket, serial, token or client address after issuance and redemption', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'powbridge-secrets-'));
    dirs.push(dir);
    let log = '';
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        log += chunk.toString();
        done();
      },
    });
    let relay: Relay | undefined;
    try {
      ({ relay } = await startTestRelay({
        dataDir: dir,
        scheme,
        logger: pino({ level: 'trace' }, sink),
      }));
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
      expect(session.ticket.scheme).toBe(
        scheme === 'rsa' ? 'rsapbssa-sha384-pss-deterministic' : 'ao-ristretto255',
      );
      const issued = await new TicketClient(session.ticket).obtain(miner);
      await miner.close();
      const fresh = await CircuitClient.connect(url);
      const grant = await fresh.request('ticket.redeem', { ticket: issued.ticket });
      await expect(fresh.request('ticket.redeem', { ticket: issued.ticket })).rejects.toMatchObject(
        { code: 32 },
      );
      await fresh.request('ticket.redeem', { ticket: 'garbage' }).catch(() => undefined);
      await fresh.close();
      await new Promise((r) => setTimeout(r, 100));

      const secrets = keySecrets(dir);
      // identity + a ticket key (one secret scalar, or two primes)
      expect(secrets.length).toBeGreaterThanOrEqual(scheme === 'rsa' ? 3 : 2);
      const ticket = decodeAnyTicket(issued.ticket);
      const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
      const serials =
        ticket.version === 1
          ? [hex(ticket.v1.xc), hex(ticketMessage(ticket.v1.xc))]
          : [hex(ticket.v2.nonce), Buffer.from(ticket.v2.nonce).toString('base64')];
      const forbidden = [...secrets, 'rpc-secret-pw', issued.ticket, ...serials, grant.token];
      expect(log.length).toBeGreaterThan(100); // the relay did log at trace level
      for (const value of forbidden) expect(log).not.toContain(value);
      // No client address: the only loopback address in the log is the relay's own URL.
      const loopback = log.split('\n').filter((line) => line.includes('127.0.0.1:'));
      expect(loopback.every((line) => line.includes('relay listening'))).toBe(true);
    } finally {
      await relay?.close();
    }
  });
});
