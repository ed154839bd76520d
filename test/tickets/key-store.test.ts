import {
  chmod,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import { checkPrimeSync, generatePrimeSync } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AO_SCHEME, RSA_SCHEME } from '../../src/protocol/messages.js';
import { encodeScalar, Q } from '../../src/tickets/group.js';
import { KeyFileError } from '../../src/tickets/key-files.js';
import {
  IDENTITY_FILE,
  KeyStore,
  KeyStoreError,
  type KeyStoreOptions,
  type TicketKeyInfo,
} from '../../src/tickets/key-store.js';
import { openTicketKeys } from '../../src/tickets/ticket-desk.js';
import { fixedRandom } from '../helpers/fixed-random.js';
import { fixtureRsaKeys, rsaFixtureKeys } from '../helpers/rsa-keys.js';

const DAY = 20_413; // 2025-11-21
const at = (day: number, hour = 12) => day * 86_400 + hour * 3600;

let dataDir: string;
let keysDir: string;
let clock: number;
const now = () => clock;

beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'powbridge-keys-'));
  keysDir = join(dataDir, 'keys');
  clock = at(DAY);
});

afterEach(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

const mode = async (path: string) => (await stat(path)).mode & 0o777;
const ticketFile = (k: TicketKeyInfo) => join(keysDir, `ticket-${k.keyId}.json`);

/** Every secret hex in the key directory (AO scalars, RSA primes), to check that none leaks. */
async function secrets(): Promise<string[]> {
  const out: string[] = [];
  for (const name of await readdir(keysDir)) {
    if (!name.endsWith('.json')) continue;
    const data = JSON.parse(await readFile(join(keysDir, name), 'utf8')) as Record<string, string>;
    for (const field of ['secretKey', 'p', 'q']) {
      const value = data[field];
      if (value !== undefined) out.push(value);
    }
  }
  return out;
}

async function loadError(): Promise<Error> {
  try {
    await KeyStore.load(dataDir, { now });
  } catch (err) {
    return err as Error;
  }
  throw new Error('load succeeded');
}

describe('KeyStore: first start and reload', () => {
  it('generates an identity and one ticket key, in a 0700 directory of 0600 files', async () => {
    const store = await KeyStore.open(dataDir, { now, scheme: 'ao' });
    expect(await mode(keysDir)).toBe(0o700);
    const names = (await readdir(keysDir)).sort();
    const [key] = store.ticketKeys();
    expect(names).toEqual([IDENTITY_FILE, `ticket-${key?.keyId}.json`]);
    for (const name of names) expect(await mode(join(keysDir, name))).toBe(0o600);
    expect(store.ticketKeys()).toEqual([
      expect.objectContaining({ notBeforeDay: DAY, notAfterDay: DAY + 29 }),
    ]);
    expect(bytesToHex(store.issuingKey(DAY)?.key.keyId ?? new Uint8Array())).toBe(key?.keyId);
    expect(store.issuingKey(DAY + 29)).not.toBeNull();
    expect(store.issuingKey(DAY - 1)).toBeNull();
    expect(store.issuingKey(DAY + 30)).toBeNull();
  });

  it('honours a configured lifetime', async () => {
    const store = await KeyStore.open(dataDir, { now, scheme: 'ao', lifetimeDays: 7 });
    expect(store.ticketKeys()[0]).toMatchObject({ notBeforeDay: DAY, notAfterDay: DAY + 6 });
  });

  it('reopening loads the same keys', async () => {
    const first = await KeyStore.open(dataDir, { now, scheme: 'ao' });
    const second = await KeyStore.open(dataDir, { now, scheme: 'ao' });
    expect(second.identity.publicKeyHex).toBe(first.identity.publicKeyHex);
    expect(second.ticketKeys()).toEqual(first.ticketKeys());
    expect(second.issuingKey(DAY)?.key.x).toBe(first.issuingKey(DAY)?.key.x);
    const message = new TextEncoder().encode('hello');
    const signature = second.identity.sign(message);
    expect(ed25519.verify(signature, message, first.identity.publicKey)).toBe(true);
  });

  it('uses the random source it is given', async () => {
    const a = await KeyStore.create(join(dataDir, 'a'), {
      now,
      scheme: 'ao',
      random: fixedRandom('k'),
    });
    const b = await KeyStore.create(join(dataDir, 'b'), {
      now,
      scheme: 'ao',
      random: fixedRandom('k'),
    });
    expect(b.identity.publicKeyHex).toBe(a.identity.publicKeyHex);
    expect(b.ticketKeys()).toEqual(a.ticketKeys());
  });

  it('create refuses to overwrite keys; load refuses a missing store', async () => {
    await expect(KeyStore.load(dataDir, { now, scheme: 'ao' })).rejects.toThrow(
      /no keys; create them/,
    );
    const store = await KeyStore.create(dataDir, { now, scheme: 'ao' });
    await expect(KeyStore.create(dataDir, { now, scheme: 'ao' })).rejects.toThrow(
      /refusing to overwrite/,
    );
    const reloaded = await KeyStore.load(dataDir, { now, scheme: 'ao' });
    expect(reloaded.identity.publicKeyHex).toBe(store.identity.publicKeyHex);
  });

  it('never shows a secret when logged or serialised', async () => {
    const store = await KeyStore.open(dataDir, { now, scheme: 'ao' });
    const shown = `${inspect(store, { depth: 10 })} ${JSON.stringify(store)}`;
    expect(shown).toContain(store.identity.publicKeyHex);
    for (const secret of await secrets()) expect(shown).not.toContain(secret);
    expect(inspect(store.identity, { depth: 10 })).not.toContain((await secrets())[0]);
  });

  it('leaves no temporary or lock files behind', async () => {
    const store = await KeyStore.open(dataDir, { now, scheme: 'ao' });
    await store.rotate();
    await store.maintain();
    expect((await readdir(keysDir)).filter((n) => n.startsWith('.'))).toEqual([]);
  });
});

describe('KeyStore: rotation', () => {
  it('the old key issues through today and is accepted tomorrow; the new one issues from tomorrow', async () => {
    const store = await KeyStore.open(dataDir, { now, scheme: 'ao' });
    const [old] = store.ticketKeys() as [TicketKeyInfo];
    clock = at(DAY + 4);
    const { created, retired } = await store.rotate({ lifetimeDays: 10 });
    expect(retired).toEqual({ ...old, notAfterDay: DAY + 4 });
    expect(created).toMatchObject({ notBeforeDay: DAY + 5, notAfterDay: DAY + 14 });
    // Never two issuing keys for one day.
    expect(bytesToHex(store.issuingKey(DAY + 4)!.key.keyId)).toBe(old.keyId);
    expect(bytesToHex(store.issuingKey(DAY + 5)!.key.keyId)).toBe(created.keyId);
    // Persisted: a reopened store sees the same validity.
    const reopened = await KeyStore.load(dataDir, { now, scheme: 'ao' });
    expect(reopened.ticketKeys()).toEqual(store.ticketKeys());

    // Tickets of day DAY+4 are redeemable on DAY+4 and DAY+5, then the key goes.
    expect(store.acceptedKey(old.keyId)).toMatchObject({ owner: 'self', notAfterDay: DAY + 4 });
    clock = at(DAY + 5, 23);
    expect(store.acceptedKey(old.keyId)).toBeDefined();
    expect(await store.prune()).toEqual([]);
    clock = at(DAY + 6, 0);
    expect(store.acceptedKey(old.keyId)).toBeUndefined();
    expect(await store.prune()).toEqual([old.keyId]);
    await expect(stat(ticketFile(old))).rejects.toThrow(/ENOENT/);
    expect(store.ticketKeys()).toEqual([created]);
  });

  it('a key is not accepted before its first issuing day', async () => {
    const store = await KeyStore.open(dataDir, { now, scheme: 'ao' });
    const { created } = await store.rotate();
    expect(store.acceptedKey(created.keyId)).toBeUndefined();
    clock = at(DAY + 1);
    expect(store.acceptedKey(created.keyId)).toBeDefined();
    expect(store.acceptedKey('00'.repeat(8))).toBeUndefined();
  });

  it('refuses a second rotation before the new key has started', async () => {
    const store = await KeyStore.open(dataDir, { now, scheme: 'ao' });
    await store.rotate();
    await expect(store.rotate()).rejects.toThrow(/already takes over on 2025-11-22/);
    expect(store.ticketKeys()).toHaveLength(2);
    clock = at(DAY + 1);
    await expect(store.rotate()).resolves.toMatchObject({
      created: { notBeforeDay: DAY + 2 },
      retired: { notAfterDay: DAY + 1 },
    });
  });

  it('after every key expired, the new key issues from today', async () => {
    const store = await KeyStore.open(dataDir, { now, scheme: 'ao', lifetimeDays: 3 });
    clock = at(DAY + 10);
    const { created, retired } = await store.rotate({ lifetimeDays: 3 });
    expect(retired).toBeNull();
    expect(created).toMatchObject({ notBeforeDay: DAY + 10, notAfterDay: DAY + 12 });
  });

  it('renew announces the next key ahead of use and fills a day without a key', async () => {
    const store = await KeyStore.open(dataDir, { now, scheme: 'ao', lifetimeDays: 10 });
    expect(await store.renew({ leadDays: 3, lifetimeDays: 10 })).toEqual([]);
    clock = at(DAY + 7);
    const [next] = await store.renew({ leadDays: 3, lifetimeDays: 10 });
    expect(next).toMatchObject({ notBeforeDay: DAY + 10, notAfterDay: DAY + 19 });
    clock = at(DAY + 40);
    const created = await store.renew({ leadDays: 0, lifetimeDays: 10 });
    expect(created).toEqual([expect.objectContaining({ notBeforeDay: DAY + 40 })]);
  });

  it('sees a rotation made by another process before changing anything', async () => {
    const relay = await KeyStore.open(dataDir, { now, scheme: 'ao' });
    const cli = await KeyStore.load(dataDir, { now, scheme: 'ao' });
    const { created } = await cli.rotate();
    // The relay's view is stale until it reloads; its maintenance reloads first and so
    // does not add a second key for tomorrow.
    expect(relay.ticketKeys()).toHaveLength(1);
    await relay.maintain({ leadDays: 1 });
    expect(relay.ticketKeys().map((k) => k.keyId)).toContain(created.keyId);
    expect(relay.ticketKeys()).toHaveLength(2);
  });

  it('watch picks up a rotation made by another process at once', async () => {
    const relay = await KeyStore.open(dataDir, { now, scheme: 'ao' });
    const errors: unknown[] = [];
    const stop = relay.watch((err) => errors.push(err), 20);
    try {
      const { created } = await (await KeyStore.load(dataDir, { now, scheme: 'ao' })).rotate();
      await vi.waitFor(() => {
        expect(relay.ticketKeys().map((k) => k.keyId)).toContain(created.keyId);
      });
      expect(relay.ticketKeys()[0]?.notAfterDay).toBe(DAY);
      expect(errors).toEqual([]);
    } finally {
      stop();
    }
  });

  it('over months of daily upkeep and random rotations, no ticket is stranded and no day has two keys', async () => {
    const store = await KeyStore.open(dataDir, { now, scheme: 'ao', random: fixedRandom('sim') });
    const dice = fixedRandom('dice');
    const seen = new Map<string, TicketKeyInfo>();
    const tickets: { keyId: string; day: number }[] = [];
    let rotations = 0;
    for (let day = DAY; day < DAY + 150; day++) {
      clock = at(day, 0);
      await store.maintain({ leadDays: 2, lifetimeDays: 12 });
      const morning = store.issuingKey(day);
      expect(morning).not.toBeNull();
      tickets.push({ keyId: bytesToHex(morning!.key.keyId), day });
      if ((dice(1)[0] as number) < 48) {
        clock = at(day, 13);
        const pending = store.ticketKeys().some((k) => k.notBeforeDay > day);
        if (pending) await expect(store.rotate()).rejects.toThrow(KeyStoreError);
        else {
          await store.rotate({ lifetimeDays: 1 + ((dice(1)[0] as number) % 20) });
          rotations++;
        }
      }
      clock = at(day, 23);
      // Same key all day, whatever rotated.
      expect(store.issuingKey(day)?.key.keyId).toEqual(morning!.key.keyId);
      tickets.push({ keyId: bytesToHex(morning!.key.keyId), day });

      const held = store.ticketKeys();
      for (let i = 1; i < held.length; i++) {
        expect(held[i]!.notBeforeDay).toBeGreaterThan(held[i - 1]!.notAfterDay);
      }
      for (const k of held) seen.set(k.keyId, k);
      // Accepted exactly while its tickets can be redeemed.
      for (const k of seen.values()) {
        const expected = k.notBeforeDay <= day && day <= k.notAfterDay + 1;
        expect(store.acceptedKey(k.keyId) !== undefined).toBe(expected);
      }
      // Every ticket of today and yesterday verifies under a key listing its day.
      for (const t of tickets.filter((t) => t.day >= day - 1)) {
        const accepted = store.acceptedKey(t.keyId);
        expect(accepted).toBeDefined();
        expect(accepted!.notBeforeDay <= t.day && t.day <= accepted!.notAfterDay).toBe(true);
      }
    }
    expect(rotations).toBeGreaterThan(5);
    expect(seen.size).toBeGreaterThan(rotations);
  }, 60_000);
});

describe('KeyStore: refuses unsafe or malformed files', () => {
  it.each([0o644, 0o640, 0o604, 0o660])('refuses a ticket key file with mode %o', async (m) => {
    const store = await KeyStore.open(dataDir, { now, scheme: 'ao' });
    const file = ticketFile(store.ticketKeys()[0]!);
    await chmod(file, m);
    const err = await loadError();
    expect(err.message).toContain(file);
    expect(err.message).toContain(`chmod 600 ${file}`);
  });

  it('refuses an identity file readable by others, and a key directory open to them', async () => {
    await KeyStore.open(dataDir, { now, scheme: 'ao' });
    const identity = join(keysDir, IDENTITY_FILE);
    await chmod(identity, 0o644);
    expect((await loadError()).message).toContain(`chmod 600 ${identity}`);
    await chmod(identity, 0o600);
    await chmod(keysDir, 0o755);
    expect((await loadError()).message).toContain(`chmod 700 ${keysDir}`);
    await expect(KeyStore.open(dataDir, { now, scheme: 'ao' })).rejects.toThrow(/chmod 700/);
  });

  type Edit = (data: Record<string, unknown>) => Record<string, unknown> | string;
  const ticketEdits: [string, Edit, RegExp][] = [
    ['not JSON (truncated)', (d) => JSON.stringify(d).slice(0, 60), /not JSON/],
    ['short secret', (d) => ({ ...d, secretKey: (d.secretKey as string).slice(2) }), /secretKey/],
    [
      'upper-case hex',
      (d) => ({ ...d, secretKey: (d.secretKey as string).toUpperCase() }),
      /secretKey/,
    ],
    [
      'scalar >= q',
      (d) => ({ ...d, secretKey: bytesToHex(encodeScalar(Q - 1n)).replace(/..$/, 'ff') }),
      /secretKey/,
    ],
    ['zero scalar', (d) => ({ ...d, secretKey: '00'.repeat(32) }), /secretKey/],
    [
      'wrong public key',
      (d) => ({
        ...d,
        publicKey: 'e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76',
      }),
      /publicKey does not match/,
    ],
    ['wrong key id', (d) => ({ ...d, keyId: '0011223344556677' }), /keyId does not match/],
    ['days reversed', (d) => ({ ...d, notBeforeDay: DAY + 40 }), /notAfterDay/],
    ['unknown field', (d) => ({ ...d, extra: 1 }), /unknown field/],
    ['wrong format', (d) => ({ ...d, format: 'something' }), /format/],
    ['missing field', ({ notAfterDay: _n, ...d }) => d, /notAfterDay/],
  ];
  it.each(ticketEdits)('refuses a ticket key file: %s', async (_name, edit, reason) => {
    const store = await KeyStore.open(dataDir, { now, scheme: 'ao' });
    const file = ticketFile(store.ticketKeys()[0]!);
    const all = await secrets();
    const edited = edit(JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>);
    await writeFile(file, typeof edited === 'string' ? edited : JSON.stringify(edited), {
      mode: 0o600,
    });
    const err = await loadError();
    expect(err).toBeInstanceOf(KeyFileError);
    expect(err.message).toContain(`${file}: malformed key file`);
    expect(err.message).toMatch(reason);
    for (const secret of all) {
      expect(err.message).not.toContain(secret);
      expect(err.message.toLowerCase()).not.toContain(secret.slice(0, 16));
    }
  });

  it('refuses an identity file whose public key does not match, or that is not JSON', async () => {
    await KeyStore.open(dataDir, { now, scheme: 'ao' });
    const file = join(keysDir, IDENTITY_FILE);
    const all = await secrets();
    const data = JSON.parse(await readFile(file, 'utf8')) as Record<string, string>;
    await writeFile(file, JSON.stringify({ ...data, publicKey: '11'.repeat(32) }));
    let err = await loadError();
    expect(err.message).toMatch(/identity\.json: malformed key file: publicKey does not match/);
    await writeFile(file, `{"secretKey": "${data.secretKey}"`);
    err = await loadError();
    expect(err.message).toMatch(/not JSON/);
    for (const secret of all) expect(err.message).not.toContain(secret.slice(0, 16));
  });

  it('refuses a key file renamed to another id, and two keys valid on one day', async () => {
    const store = await KeyStore.open(dataDir, { now, scheme: 'ao' });
    const file = ticketFile(store.ticketKeys()[0]!);
    const renamed = join(keysDir, 'ticket-0011223344556677.json');
    await rename(file, renamed);
    expect((await loadError()).message).toMatch(/file name does not match its key id/);
    await rename(renamed, file);

    // A second store's key, copied in with overlapping days.
    const other = await KeyStore.create(join(dataDir, 'other'), { now, scheme: 'ao' });
    const otherKey = other.ticketKeys()[0]!;
    const text = await readFile(
      join(dataDir, 'other', 'keys', `ticket-${otherKey.keyId}.json`),
      'utf8',
    );
    await writeFile(ticketFile(otherKey), text, { mode: 0o600 });
    expect((await loadError()).message).toMatch(
      /both valid on 2025-11-21; a day must have one issuing key/,
    );
  });

  it('refuses to change keys while another live process holds the lock, takes over a stale lock', async () => {
    const store = await KeyStore.open(dataDir, { now, scheme: 'ao' });
    const lock = join(keysDir, '.lock');
    await writeFile(lock, String(process.pid));
    await expect(store.rotate()).rejects.toThrow(/being changed by process/);
    await writeFile(lock, '999999999');
    await expect(store.rotate()).resolves.toBeDefined();
    expect(await readdir(keysDir)).not.toContain('.lock');
  });

  it('creates the data directory when missing', async () => {
    const nested = join(dataDir, 'a', 'b');
    await mkdir(join(dataDir, 'a'));
    const store = await KeyStore.open(nested, { now, scheme: 'ao' });
    expect(await mode(join(nested, 'keys'))).toBe(0o700);
    expect(store.ticketKeys()).toHaveLength(1);
  });
});

describe('KeyStore: RSA keys and two schemes', () => {
  /** An RSA store (the default scheme) making pre-generated keys. */
  const rsa = (extra: Partial<KeyStoreOptions> = {}): KeyStoreOptions => ({
    now,
    generateRsaKey: fixtureRsaKeys(),
    ...extra,
  });
  const bySchemes = (store: KeyStore) =>
    store.ticketKeys().map((k) => [k.scheme, k.notBeforeDay - DAY, k.notAfterDay - DAY]);

  it('makes RSA keys by default: a 0600 file of p, q and the SPKI, issuing and accepted', async () => {
    const store = await KeyStore.open(dataDir, rsa({ lifetimeDays: 10 }));
    const fixture = rsaFixtureKeys()[0]!;
    const [key] = store.ticketKeys() as [TicketKeyInfo];
    expect(store.scheme).toBe('rsa');
    expect(key).toEqual({
      keyId: bytesToHex(fixture.keyId),
      scheme: RSA_SCHEME,
      publicKey: bytesToHex(fixture.spki),
      notBeforeDay: DAY,
      notAfterDay: DAY + 9,
    });
    expect(await mode(ticketFile(key))).toBe(0o600);
    const file = JSON.parse(await readFile(ticketFile(key), 'utf8')) as Record<string, unknown>;
    expect(file).toEqual({
      format: 'powbridge-ticket-key',
      version: 1,
      scheme: 'rsapbssa-sha384-pss-deterministic',
      keyId: key.keyId,
      p: fixture.p.toString(16).padStart(256, '0'),
      q: fixture.q.toString(16).padStart(256, '0'),
      publicKey: key.publicKey,
      notBeforeDay: DAY,
      notAfterDay: DAY + 9,
    });

    expect(store.issuingRsaKey(DAY)?.key.n).toBe(fixture.n);
    expect(store.issuingRsaKey(DAY + 10)).toBeNull();
    expect(store.issuingKey(DAY)).toBeNull(); // no Abe–Okamoto key
    const accepted = store.acceptedKey(key.keyId);
    expect(accepted).toMatchObject({ scheme: 'rsa', owner: 'self', notAfterDay: DAY + 9 });
    expect(accepted?.key).toEqual({
      n: fixture.n,
      e: fixture.e,
      spki: fixture.spki,
      keyId: fixture.keyId,
    });
    expect(store.holdsKey(key.keyId)).toBe(true);

    // Round trip: a reopened store holds the same key; a reload reuses the parsed key.
    const reopened = await KeyStore.load(dataDir, { now });
    expect(reopened.ticketKeys()).toEqual(store.ticketKeys());
    expect(reopened.issuingRsaKey(DAY)?.key.p).toBe(fixture.p);
    const before = store.issuingRsaKey(DAY)?.key;
    await store.reload();
    expect(store.issuingRsaKey(DAY)?.key).toBe(before);

    const shown = `${inspect(store, { depth: 10 })} ${JSON.stringify(store)}`;
    expect(shown).toContain(key.publicKey);
    for (const secret of await secrets()) expect(shown).not.toContain(secret);
  });

  it('a relay changed over from ao to rsa issues RSA from today and still accepts its AO key', async () => {
    const ao = await KeyStore.open(dataDir, { now, scheme: 'ao', lifetimeDays: 10 });
    const [aoKey] = ao.ticketKeys() as [TicketKeyInfo];
    clock = at(DAY + 3);
    const store = await openTicketKeys(dataDir, {
      lifetimeDays: 10,
      now,
      scheme: 'rsa',
      generateRsaKey: fixtureRsaKeys(),
    });
    expect(bySchemes(store)).toEqual([
      [AO_SCHEME, 0, 9],
      [RSA_SCHEME, 3, 12],
    ]);
    const rsaKey = store.ticketKeys()[1]!;
    expect(store.issuingRsaKey(DAY + 3)).not.toBeNull();
    expect(store.acceptedKey(aoKey.keyId)).toMatchObject({ scheme: 'ao', owner: 'self' });
    expect(store.acceptedKey(rsaKey.keyId)).toMatchObject({ scheme: 'rsa' });

    // Upkeep renews RSA only; the AO key goes once its last tickets expire.
    clock = at(DAY + 8);
    const { created } = await store.maintain({ leadDays: 7, lifetimeDays: 10 });
    expect(created).toEqual([
      expect.objectContaining({ scheme: RSA_SCHEME, notBeforeDay: DAY + 13 }),
    ]);
    clock = at(DAY + 10);
    expect(store.acceptedKey(aoKey.keyId)).toBeDefined(); // tickets of its last day
    expect((await store.maintain({ leadDays: 7, lifetimeDays: 10 })).pruned).toEqual([]);
    clock = at(DAY + 11);
    expect((await store.maintain({ leadDays: 7, lifetimeDays: 10 })).pruned).toEqual([aoKey.keyId]);
    expect(store.acceptedKey(aoKey.keyId)).toBeUndefined();
    expect(store.ticketKeys().every((k) => k.scheme === RSA_SCHEME)).toBe(true);
    expect(store.issuingKey(DAY + 11)).toBeNull();
  });

  it('rotates each scheme on its own; a pending key blocks only its scheme', async () => {
    const generateRsaKey = fixtureRsaKeys();
    await KeyStore.open(dataDir, { now, scheme: 'ao' });
    const store = await openTicketKeys(dataDir, {
      lifetimeDays: 30,
      now,
      scheme: 'rsa',
      generateRsaKey,
    });
    const [aoOld, rsaOld] = store.ticketKeys() as [TicketKeyInfo, TicketKeyInfo];
    expect([aoOld.scheme, rsaOld.scheme]).toEqual([AO_SCHEME, RSA_SCHEME]);

    const aoRotation = await store.rotate({ scheme: 'ao', lifetimeDays: 5 });
    expect(aoRotation.retired).toEqual({ ...aoOld, notAfterDay: DAY });
    expect(aoRotation.created).toMatchObject({ scheme: AO_SCHEME, notBeforeDay: DAY + 1 });
    // The RSA key is untouched, and can still rotate today.
    expect(store.ticketKeys().find((k) => k.keyId === rsaOld.keyId)).toEqual(rsaOld);
    await expect(store.rotate({ scheme: 'ao' })).rejects.toThrow(
      /ao ticket key .* already takes over/,
    );
    const rsaRotation = await store.rotate(); // the store's scheme
    expect(rsaRotation.retired).toEqual({ ...rsaOld, notAfterDay: DAY });
    expect(rsaRotation.created).toMatchObject({
      scheme: RSA_SCHEME,
      notBeforeDay: DAY + 1,
      notAfterDay: DAY + 30,
    });
    await expect(store.rotate()).rejects.toThrow(/rsa ticket key .* already takes over/);
    expect(bySchemes(store)).toEqual([
      [AO_SCHEME, 0, 0],
      [RSA_SCHEME, 0, 0],
      [AO_SCHEME, 1, 5],
      [RSA_SCHEME, 1, 30],
    ]);
    // One issuing key per scheme per day, both of today's still accepted tomorrow.
    clock = at(DAY + 1);
    expect(bytesToHex(store.issuingKey(DAY + 1)!.key.keyId)).toBe(aoRotation.created.keyId);
    expect(bytesToHex(store.issuingRsaKey(DAY + 1)!.key.keyId)).toBe(rsaRotation.created.keyId);
    expect(store.acceptedKey(rsaOld.keyId)).toBeDefined();
    expect(store.acceptedKey(aoOld.keyId)).toBeDefined();
    // Persisted as such.
    expect((await KeyStore.load(dataDir, { now })).ticketKeys()).toEqual(store.ticketKeys());
  });

  it('keys of two schemes may share days; two keys of one scheme on a day are refused', async () => {
    const a = await KeyStore.open(join(dataDir, 'a'), rsa());
    const b = await KeyStore.open(join(dataDir, 'b'), rsa({ generateRsaKey: fixtureRsaKeys(1) }));
    const c = await KeyStore.open(join(dataDir, 'c'), { now, scheme: 'ao' });
    const copy = async (from: string, k: TicketKeyInfo) =>
      writeFile(
        join(dataDir, 'a', 'keys', `ticket-${k.keyId}.json`),
        await readFile(join(dataDir, from, 'keys', `ticket-${k.keyId}.json`), 'utf8'),
        { mode: 0o600 },
      );
    await copy('c', c.ticketKeys()[0]!);
    await a.reload();
    expect(
      a
        .ticketKeys()
        .map((k) => k.scheme)
        .sort(),
    ).toEqual([AO_SCHEME, RSA_SCHEME]);
    await copy('b', b.ticketKeys()[0]!);
    await expect(a.reload()).rejects.toThrow(
      /rsa ticket keys [0-9a-f]{16} and [0-9a-f]{16} are both valid on 2025-11-21; a day must have one issuing key of each scheme/,
    );
  });

  /** A 1024-bit prime (top two bits set, so the modulus keeps 2048 bits) that is not safe. */
  const notSafe = (() => {
    for (;;) {
      const p = generatePrimeSync(1024, { bigint: true });
      if (p >= 3n << 1022n && !checkPrimeSync((p - 1n) / 2n)) return p;
    }
  })();
  const hex256 = (x: bigint) => x.toString(16).padStart(256, '0');
  type Edit = (data: Record<string, unknown>) => Record<string, unknown>;
  const rsaEdits: [string, Edit, RegExp][] = [
    [
      'p not a safe prime',
      (d) => ({ ...d, p: hex256(notSafe) }),
      /p, q: p and q must be safe primes/,
    ],
    ['p = q', (d) => ({ ...d, q: d.p }), /p, q: p and q must differ/],
    ['short p', (d) => ({ ...d, p: (d.p as string).slice(2) }), /p: expected 128 bytes of hex/],
    [
      'publicKey of another key',
      (d) => ({ ...d, publicKey: bytesToHex(rsaFixtureKeys()[5]!.spki) }),
      /publicKey does not match p and q/,
    ],
    ['wrong key id', (d) => ({ ...d, keyId: '0011223344556677' }), /keyId does not match/],
    ['a secret key field too', (d) => ({ ...d, secretKey: '11'.repeat(32) }), /unknown field/],
    [
      'unknown scheme',
      (d) => ({ ...d, scheme: 'rsa' }),
      /scheme: expected "abe-okamoto-ristretto255" or/,
    ],
  ];
  it.each(rsaEdits)(
    'refuses an RSA key file: %s, without quoting p or q',
    async (_n, edit, reason) => {
      const store = await KeyStore.open(dataDir, rsa());
      const file = ticketFile(store.ticketKeys()[0]!);
      const all = await secrets();
      expect(all).toHaveLength(3); // identity, p, q
      await writeFile(
        file,
        JSON.stringify(edit(JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>)),
        { mode: 0o600 },
      );
      const err = await loadError();
      expect(err).toBeInstanceOf(KeyFileError);
      expect(err.message).toContain(`${file}: malformed key file`);
      expect(err.message).toMatch(reason);
      for (const secret of all)
        expect(err.message.toLowerCase()).not.toContain(secret.slice(0, 16));
    },
  );

  it('refuses an RSA key file readable by others', async () => {
    const store = await KeyStore.open(dataDir, rsa());
    const file = ticketFile(store.ticketKeys()[0]!);
    await chmod(file, 0o644);
    expect((await loadError()).message).toContain(`chmod 600 ${file}`);
  });
});
