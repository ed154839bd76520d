import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CircuitClient } from '../../src/client/circuit-client.js';
import type { Relay } from '../../src/relay/relay.js';
import { capturedLog, mineTicket } from '../helpers/mine-ticket.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { query } from '../helpers/store-engines.js';
import { startTestRelay } from '../helpers/test-relay.js';

/**
 * A relay whose tickets live in PostgreSQL (`[storage] url`, issue 17): it creates its tables,
 * redeems a mined ticket once, keeps the spend and the grant in the database and not in its
 * data directory, finds both again after a restart, and never logs the password.
 */

let server: TestPostgres;
const dirs: string[] = [];
beforeAll(async () => {
  server = await startPostgres();
});
afterAll(async () => {
  await server?.stop();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('a relay on PostgreSQL', () => {
  it('redeems a ticket once, keeps spend and grant in the database across a restart, and never logs the password', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'powbridge-relay-pg-'));
    dirs.push(dataDir);
    const url = await server.createDatabase('family');
    const storage = { url, passwordFile: server.passwordFile };
    const log = capturedLog();
    let relay: Relay | undefined;
    let token: string;
    let ticket: string;
    try {
      ({ relay } = await startTestRelay({ dataDir, storage, logger: log.logger }));
      ({ ticket } = await mineTicket(relay));
      const circuit = await CircuitClient.connect(`${relay.url.replace('http', 'ws')}/v1/circuit`);
      const grant = await circuit.request('ticket.redeem', { ticket });
      token = grant.token;
      expect(grant.class).toBe('paid');
      await expect(circuit.request('ticket.redeem', { ticket })).rejects.toMatchObject({
        code: 32,
      });
      await circuit.close();
      expect(await relay.tickets.store.count()).toBe(1);
    } finally {
      await relay?.close();
    }
    // In the database, not in SQLite files beside the keys.
    expect(await query(url, server.password, 'SELECT count(*)::int AS n FROM spent')).toEqual([
      { n: 1 },
    ]);
    expect(
      await query(url, server.password, 'SELECT count(*)::int AS n FROM grant_tickets'),
    ).toEqual([{ n: 1 }]);
    expect(existsSync(join(dataDir, 'spent.sqlite'))).toBe(false);
    expect(existsSync(join(dataDir, 'grants.sqlite'))).toBe(false);
    expect(log.text()).toContain(
      `"storage":"PostgreSQL postgres://powbridge@127.0.0.1:${server.port}/family"`,
    );
    expect(log.text()).not.toContain(server.password);

    // Restarted: the grant is restored from the database, and the ticket is still spent.
    let again: Relay | undefined;
    try {
      ({ relay: again } = await startTestRelay({ dataDir, storage }));
      expect(again.tickets.redeemer.grants.lookup(token, Date.now() / 1000)).toMatchObject({
        tickets: 1,
      });
      const circuit = await CircuitClient.connect(`${again.url.replace('http', 'ws')}/v1/circuit`);
      await expect(circuit.request('ticket.redeem', { ticket })).rejects.toMatchObject({
        code: 32,
      });
      await circuit.close();
    } finally {
      await again?.close();
    }
  });

  it('two instances with one key directory and one database: a ticket from A is granted once, at B', async () => {
    // Two bridge instances of one family on this machine: the same data directory (so the same
    // key files; docs/operating.md) and the same database.
    const dataDir = mkdtempSync(join(tmpdir(), 'powbridge-relay-pg-family-'));
    dirs.push(dataDir);
    const url = await server.createDatabase('pair');
    const storage = { url, passwordFile: server.passwordFile };
    const { relay: a } = await startTestRelay({ dataDir, storage });
    let b: Relay | undefined;
    try {
      ({ relay: b } = await startTestRelay({ dataDir, storage }));
      expect(b.tickets.keys.identity.publicKeyHex).toBe(a.tickets.keys.identity.publicKeyHex);
      const redeemAt = async (relay: Relay, ticket: string) => {
        const circuit = await CircuitClient.connect(
          `${relay.url.replace('http', 'ws')}/v1/circuit`,
        );
        try {
          return await circuit.request('ticket.redeem', { ticket }).then(
            (grant) => ({ granted: grant.class }),
            (err: { code?: number }) => ({ refused: err.code }),
          );
        } finally {
          await circuit.close();
        }
      };
      const { ticket: first } = await mineTicket(a);
      const relays: Relay[] = [a, b];
      // Mined at A, spent at B over a fresh circuit; then A knows it is spent.
      expect(await redeemAt(b, first)).toEqual({ granted: 'paid' });
      expect(await redeemAt(a, first)).toEqual({ refused: 32 });
      // Both at once: exactly one grant, the other 32.
      const { ticket: second } = await mineTicket(a);
      const answers = await Promise.all(relays.map((relay) => redeemAt(relay, second)));
      expect(answers).toContainEqual({ granted: 'paid' });
      expect(answers).toContainEqual({ refused: 32 });
      expect(await query(url, server.password, 'SELECT count(*)::int AS n FROM spent')).toEqual([
        { n: 2 },
      ]);
    } finally {
      await b?.close();
      await a.close();
    }
  });

  it('does not start with a wrong password, and says why without repeating it', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'powbridge-relay-pg-'));
    dirs.push(dataDir);
    const url = await server.createDatabase();
    const passwordFile = join(dataDir, 'wrong-password');
    writeFileSync(passwordFile, 'wrong-password-31337\n', { mode: 0o600 });
    const refusal = await startTestRelay({ dataDir, storage: { url, passwordFile } }).catch(
      (err: unknown) => err,
    );
    expect(refusal).toBeInstanceOf(Error);
    const message = (refusal as Error).message;
    expect(message).toMatch(
      /^storage: cannot use postgres:\/\/powbridge@127\.0\.0\.1:\d+\/test_\d+: password authentication failed/,
    );
    expect(message).not.toContain('wrong-password-31337');
  });
});
