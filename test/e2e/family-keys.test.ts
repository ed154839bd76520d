import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CircuitClient } from '../../src/client/circuit-client.js';
import { FamilyKeys, readFamilyKeyFile, writeFamilyKeyFile } from '../../src/relay/family-keys.js';
import type { Relay } from '../../src/relay/relay.js';
import { PostgresDatabase } from '../../src/storage/postgres.js';
import { PostgresKeyVault } from '../../src/storage/postgres-key-vault.js';
import { ticketKeyText } from '../../src/tickets/key-format.js';
import { utcDay } from '../../src/tickets/keyring.js';
import { mineTicket } from '../helpers/mine-ticket.js';
import { usePostgres } from '../helpers/postgres.js';
import { fixtureRsaKeys, rsaFixtureKeys } from '../helpers/rsa-keys.js';
import { query } from '../helpers/store-engines.js';
import { startTestRelay } from '../helpers/test-relay.js';

/**
 * A relay family sharing its keys through PostgreSQL (`storage.familyKeyFile`, issue 17): two
 * relays with data directories of their own, one database and one family key hold the same
 * identity and ticket keys, accept each other's tickets, and a rotation at one reaches the
 * other at its next sync. A wrong family key, a tampered row and keys of an instance's own
 * that clash with the family's refuse the start; no row holds a private key in clear.
 */

const server = usePostgres();
const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function tempDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `powbridge-family-${name}-`));
  dirs.push(dir);
  return dir;
}

async function familyKeyFile(): Promise<string> {
  const file = join(tempDir('key'), 'family.key');
  await writeFamilyKeyFile(file);
  return file;
}

/** A family member's `[storage]`: the database, its password file, the family key. */
async function familyStorage(familyKey: string, url?: string) {
  return {
    url: url ?? (await server().createDatabase()),
    passwordFile: server().passwordFile,
    familyKeyFile: familyKey,
  };
}

async function redeemAt(relay: Relay, ticket: string) {
  const circuit = await CircuitClient.connect(`${relay.url.replace('http', 'ws')}/v1/circuit`);
  try {
    return await circuit.request('ticket.redeem', { ticket }).then(
      (grant) => ({ granted: grant.class }),
      (err: { code?: number }) => ({ refused: err.code }),
    );
  } finally {
    await circuit.close();
  }
}

/** The private parts in a data directory's key files, as hex strings. */
function privateHex(dataDir: string): string[] {
  const keysDir = join(dataDir, 'keys');
  return readdirSync(keysDir)
    .filter((name) => name.endsWith('.json'))
    .flatMap((name) => {
      const file = JSON.parse(readFileSync(join(keysDir, name), 'utf8')) as Record<string, string>;
      return [file.secretKey, file.p, file.q].filter((v): v is string => v !== undefined);
    });
}

/** Every row of every table of the database, as PostgreSQL prints it (bytea as hex). */
async function everyRow(url: string): Promise<string> {
  const tables = await query<{ name: string }>(
    url,
    server().password,
    "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public'",
  );
  const rows = await Promise.all(
    tables.map(({ name }) => query(url, server().password, `SELECT t::text AS row FROM ${name} t`)),
  );
  return JSON.stringify(rows);
}

describe('a family sharing keys through the database', () => {
  it('B starts with A’s keys, grants A’s ticket, and takes A’s rotation without a restart', async () => {
    const storage = await familyStorage(await familyKeyFile());
    const a = (await startTestRelay({ dataDir: tempDir('a'), storage })).relay;
    let b: Relay | undefined;
    try {
      b = (await startTestRelay({ dataDir: tempDir('b'), storage })).relay;
      expect(b.tickets.keys.identity.publicKeyHex).toBe(a.tickets.keys.identity.publicKeyHex);
      expect(b.tickets.keys.ticketKeys()).toEqual(a.tickets.keys.ticketKeys());
      expect(b.tickets.keys.ticketKeys()).toHaveLength(1);

      // Issued at A, granted at B over a fresh circuit, then spent for both.
      const { ticket } = await mineTicket(a);
      expect(await redeemAt(b, ticket)).toEqual({ granted: 'paid' });
      expect(await redeemAt(a, ticket)).toEqual({ refused: 32 });

      // A rotation at A (as `powbridge keys rotate` beside it): A's sync uploads it, B's
      // brings it in; B's old key now ends today, and B's descriptor lists the new one.
      const { created, retired } = await a.tickets.keys.rotate();
      const pushed = await a.familyKeys?.sync();
      expect(pushed?.pulled).toEqual([]);
      expect(pushed?.pushed.sort()).toEqual(
        [`ticket-${retired?.keyId}.json`, `ticket-${created.keyId}.json`].sort(),
      );
      const pulled = await b.familyKeys?.sync();
      expect(pulled?.pulled.sort()).toEqual(
        [`ticket-${retired?.keyId}.json`, `ticket-${created.keyId}.json`].sort(),
      );
      expect(b.tickets.keys.ticketKeys()).toEqual(a.tickets.keys.ticketKeys());
      const today = utcDay(Date.now() / 1000);
      expect(b.tickets.keys.ticketKeys()).toEqual([
        expect.objectContaining({ keyId: retired?.keyId, notAfterDay: today }),
        expect.objectContaining({ keyId: created.keyId, notBeforeDay: today + 1 }),
      ]);
      expect(b.tickets.descriptor().tickets.keys.map((k) => k.keyId)).toEqual([
        retired?.keyId,
        created.keyId,
      ]);
      // Nothing changed since: the next sync stops at the change counter.
      expect(await b.familyKeys?.sync()).toEqual({ pulled: [], pushed: [], removed: [] });
      // B's upkeep finds the family's keys enough: it makes none of its own.
      expect(await b.familyKeys?.maintain()).toEqual({ created: [], pruned: [] });

      // No row of any table holds a private key in clear.
      const rows = await everyRow(storage.url);
      const secrets = privateHex(a.tickets.keys.dir.replace(/\/keys$/, ''));
      expect(secrets.length).toBeGreaterThanOrEqual(5); // identity, p and q of two keys
      for (const secret of secrets) expect(rows).not.toContain(secret);
      expect(rows).toContain(a.tickets.keys.identity.publicKeyHex);
      expect(rows).toContain(created.publicKey);
    } finally {
      await b?.close();
      await a.close();
    }
  });

  it('two instances starting at once on an empty database make one identity and one key', async () => {
    const storage = await familyStorage(await familyKeyFile());
    const started = await Promise.allSettled([
      startTestRelay({ dataDir: tempDir('c'), storage }),
      startTestRelay({ dataDir: tempDir('d'), storage }),
    ]);
    const relays = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value.relay] : []));
    try {
      expect(relays).toHaveLength(2);
      const [c, d] = relays as [Relay, Relay];
      expect(c.tickets.keys.identity.publicKeyHex).toBe(d.tickets.keys.identity.publicKeyHex);
      expect(c.tickets.keys.ticketKeys()).toEqual(d.tickets.keys.ticketKeys());
      expect(
        await query(storage.url, server().password, 'SELECT kind FROM key_vault ORDER BY kind'),
      ).toEqual([{ kind: 'identity' }, { kind: 'ticket' }]);
    } finally {
      await Promise.all(relays.map((relay) => relay.close()));
    }
  });

  it('refuses a wrong family key, a tampered row, and keys of its own that clash', async () => {
    const storage = await familyStorage(await familyKeyFile());
    const a = (await startTestRelay({ dataDir: tempDir('a'), storage })).relay;
    const aDir = a.tickets.keys.dir.replace(/\/keys$/, '');
    await a.close();

    // Another family key: the start stops before any key is written to the data directory.
    const wrongDir = tempDir('wrong');
    await expect(
      startTestRelay({
        dataDir: wrongDir,
        storage: { ...storage, familyKeyFile: await familyKeyFile() },
      }),
    ).rejects.toThrow(/^the family key does not open the keys in the database/);
    expect(readdirSync(join(wrongDir, 'keys')).filter((n) => n.endsWith('.json'))).toEqual([]);

    // One byte of a sealed ticket key changed in the database.
    const flip = `UPDATE key_vault SET sealed = set_byte(sealed, 0, get_byte(sealed, 0) # 1)
                  WHERE kind = 'ticket'`;
    await query(storage.url, server().password, flip);
    await expect(startTestRelay({ dataDir: tempDir('tampered'), storage })).rejects.toThrow(
      /^ticket key [0-9a-f]{16} in the database does not open under the family key that opens the others: its row was changed or damaged/,
    );
    await query(storage.url, server().password, flip);

    // A relay that ran alone first: another identity.
    const solo = tempDir('solo');
    await (await startTestRelay({ dataDir: solo })).relay.close();
    await expect(startTestRelay({ dataDir: solo, storage })).rejects.toThrow(
      new RegExp(
        `^${join(solo, 'keys', 'identity.json')} is the identity [0-9a-f]{64}, but the family in ` +
          `postgres://powbridge@127\\.0\\.0\\.1:\\d+/test_\\d+ has ` +
          `${a.tickets.keys.identity.publicKeyHex}: an instance joining a family takes the family's keys`,
      ),
    );

    // The family's identity, but a ticket key of its own over the family key's days.
    const clash = tempDir('clash');
    mkdirSync(join(clash, 'keys'), { mode: 0o700 });
    const identity = readFileSync(join(aDir, 'keys', 'identity.json'), 'utf8');
    writeFileSync(join(clash, 'keys', 'identity.json'), identity, { mode: 0o600 });
    const familyKeyId = a.tickets.keys.ticketKeys()[0]?.keyId;
    const own = rsaFixtureKeys().find((k) => Buffer.from(k.keyId).toString('hex') !== familyKeyId);
    if (!own) throw new Error('no second fixture key');
    const ownId = Buffer.from(own.keyId).toString('hex');
    const today = utcDay(Date.now() / 1000);
    const text = ticketKeyText({
      scheme: 'rsa',
      key: own,
      keyIdHex: ownId,
      notBeforeDay: today,
      notAfterDay: today + 29,
    });
    writeFileSync(join(clash, 'keys', `ticket-${ownId}.json`), text, { mode: 0o600 });
    await expect(startTestRelay({ dataDir: clash, storage })).rejects.toThrow(
      new RegExp(
        `^${join(clash, 'keys')}: ticket key ${ownId} \\(rsa, .*\\) and the family's ticket key ` +
          `${familyKeyId} \\(.*\\) in postgres://.* both issue on \\d{4}-\\d\\d-\\d\\d: this ` +
          `instance made keys of its own. Move ticket-${ownId}.json out of`,
      ),
    );
    // Nothing of the clashing instance went up.
    expect(
      await query(
        storage.url,
        server().password,
        "SELECT key_id FROM key_vault WHERE kind = 'ticket'",
      ),
    ).toEqual([{ key_id: familyKeyId }]);
  });
});

describe('key upkeep across the family (an injected clock)', () => {
  it('exactly one instance makes the next key; an expired key leaves the database', async () => {
    const url = await server().createDatabase();
    const familyKey = await readFamilyKeyFile(await familyKeyFile());
    const day0 = 20_400;
    let clock = day0 * 86_400 + 3_600;
    const generateRsaKey = fixtureRsaKeys();
    const databases: PostgresDatabase[] = [];
    const member = async (name: string) => {
      const database = await PostgresDatabase.open({ url, password: server().password });
      databases.push(database);
      return FamilyKeys.open({
        vault: new PostgresKeyVault(database, familyKey),
        dataDir: tempDir(name),
        where: database.description,
        keys: { lifetimeDays: 30, now: () => clock, scheme: 'rsa', generateRsaKey },
      });
    };
    try {
      const x = await member('x');
      const y = await member('y');
      const [first] = x.keys.ticketKeys();
      expect(y.keys.ticketKeys()).toEqual([first]);

      // 23 days on, the next key is due (7 days ahead): both run their upkeep at once.
      clock += 23 * 86_400;
      const done = await Promise.all([x.maintain(), y.maintain()]);
      expect(done.flatMap((d) => d.created)).toHaveLength(1);
      const [made] = done.flatMap((d) => d.created);
      expect(made).toMatchObject({ notBeforeDay: day0 + 30, notAfterDay: day0 + 59 });
      expect(x.keys.ticketKeys()).toEqual([first, made]);
      expect(y.keys.ticketKeys()).toEqual([first, made]);

      // The first key's tickets stop being redeemable after day0 + 30: Y prunes it, and it
      // leaves the database; X's copy is never uploaded again.
      clock += 8 * 86_400;
      expect(await y.maintain()).toEqual({ created: [], pruned: [first?.keyId] });
      expect((await x.sync()).pushed).toEqual([]);
      const ids = await query(
        url,
        server().password,
        "SELECT key_id FROM key_vault WHERE kind = 'ticket'",
      );
      expect(ids).toEqual([{ key_id: made?.keyId }]);
      expect(await x.maintain()).toEqual({ created: [], pruned: [first?.keyId] });
      expect(x.keys.ticketKeys()).toEqual([made]);
    } finally {
      for (const database of databases) await database.close();
    }
  });
});
