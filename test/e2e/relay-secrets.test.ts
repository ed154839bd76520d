import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CircuitClient } from '../../src/client/circuit-client.js';
import type { Relay } from '../../src/relay/relay.js';
import { decodeAnyTicket } from '../../src/tickets/any-ticket.js';
import { ticketMessage } from '../../src/tickets/scheme.js';
import { capturedLog, mineTicket } from '../helpers/mine-ticket.js';
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
    const log = capturedLog();
    let relay: Relay | undefined;
    try {
      ({ relay } = await startTestRelay({
        dataDir: dir,
        scheme,
        logger: log.logger,
      }));
      const url = `${relay.url.replace('http', 'ws')}/v1/circuit`;
      const issued = await mineTicket(relay);
      expect(issued.terms.scheme).toBe(
        scheme === 'rsa' ? 'rsapbssa-sha384-pss-deterministic' : 'ao-ristretto255',
      );
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
      const text = log.text();
      expect(text.length).toBeGreaterThan(100); // the relay did log at trace level
      for (const value of forbidden) expect(text).not.toContain(value);
      // No client address: the only loopback address in the log is the relay's own URL.
      const loopback = text.split('\n').filter((line) => line.includes('127.0.0.1:'));
      expect(loopback.every((line) => line.includes('relay listening'))).toBe(true);
    } finally {
      await relay?.close();
    }
  });
});
