import { describe, expect, it } from 'vitest';
import {
  FAMILY_KEY_BYTES,
  FamilyKey,
  FamilyKeyFileError,
  KeySealError,
  newFamilyKeyText,
  NONCE_BYTES,
  parseFamilyKeyText,
  TAG_BYTES,
} from '../../src/storage/key-sealing.js';
import { PostgresDatabase } from '../../src/storage/postgres.js';
import {
  FamilyKeyMismatchError,
  KeyVaultDamagedError,
  PostgresKeyVault,
  type VaultKey,
} from '../../src/storage/postgres-key-vault.js';
import { fixedRandom } from '../helpers/fixed-random.js';
import { usePostgres } from '../helpers/postgres.js';
import { query } from '../helpers/store-engines.js';

/**
 * The family key vault (src/storage/key-sealing.ts, postgres-key-vault.ts): AES-256-GCM
 * sealing under the family key, bound to the row it belongs to, and the PostgreSQL table that
 * holds the sealed key files beside their public parts.
 */

const secret = (seed: string) => fixedRandom(seed)(FAMILY_KEY_BYTES);
const label = { kind: 'ticket', keyId: '0123456789abcdef' } as const;
const SECRET_TEXT =
  '{"secretKey":"5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e"}\n';

describe('sealing under the family key', () => {
  it('opens what it sealed, with a fresh nonce each time', () => {
    const key = new FamilyKey(secret('a'));
    const one = key.seal(SECRET_TEXT, label);
    const two = key.seal(SECRET_TEXT, label);
    expect(one.nonce).toHaveLength(NONCE_BYTES);
    expect(one.box).toHaveLength(Buffer.byteLength(SECRET_TEXT) + TAG_BYTES);
    expect(one.nonce.equals(two.nonce)).toBe(false);
    expect(one.box.equals(two.box)).toBe(false);
    expect(key.open(one, label)).toBe(SECRET_TEXT);
    expect(key.open(two, label)).toBe(SECRET_TEXT);
    // Another instance with the same family key opens it too.
    expect(new FamilyKey(secret('a')).open(one, label)).toBe(SECRET_TEXT);
  });

  it('refuses another family key, another row, a changed byte and a short value', () => {
    const key = new FamilyKey(secret('a'));
    const sealed = key.seal(SECRET_TEXT, label);
    expect(() => new FamilyKey(secret('b')).open(sealed, label)).toThrow(KeySealError);
    expect(() => key.open(sealed, { kind: 'ticket', keyId: 'fedcba9876543210' })).toThrow(
      /ticket key fedcba9876543210 does not open under the family key/,
    );
    expect(() => key.open(sealed, { kind: 'identity', keyId: label.keyId })).toThrow(KeySealError);
    for (const at of [0, 10, sealed.box.length - 1]) {
      const box = Buffer.from(sealed.box);
      box[at] = (box[at] ?? 0) ^ 1;
      expect(() => key.open({ nonce: sealed.nonce, box }, label)).toThrow(KeySealError);
    }
    const nonce = Buffer.from(sealed.nonce);
    nonce[0] = (nonce[0] ?? 0) ^ 1;
    expect(() => key.open({ nonce, box: sealed.box }, label)).toThrow(KeySealError);
    expect(() => key.open({ nonce: sealed.nonce, box: sealed.box.subarray(0, 8) }, label)).toThrow(
      /wrong size/,
    );
  });

  it('gives each family key its own check value, and never shows the key', () => {
    const a = new FamilyKey(secret('a'));
    expect(a.matches(new FamilyKey(secret('a')).check)).toBe(true);
    expect(a.matches(new FamilyKey(secret('b')).check)).toBe(false);
    expect(a.matches(new Uint8Array(3))).toBe(false);
    const hex = Buffer.from(secret('a')).toString('hex');
    const shown = `${JSON.stringify({ a })} ${String(a.check.toString('hex'))}`;
    expect(shown).not.toContain(hex);
    expect(JSON.stringify({ a })).toBe('{"a":"[family key]"}');
    expect(() => new FamilyKey(new Uint8Array(16))).toThrow(/a family key is 32 bytes/);
  });
});

describe('the family key file', () => {
  it('is 32 bytes of base64url on one line, read back exactly', () => {
    const text = newFamilyKeyText(fixedRandom('file'));
    expect(text).toMatch(/^[A-Za-z0-9_-]{43}\n$/);
    expect(Buffer.from(parseFamilyKeyText('fk', text))).toEqual(
      Buffer.from(fixedRandom('file')(32)),
    );
    expect(parseFamilyKeyText('fk', text.trimEnd())).toHaveLength(32);
    expect(parseFamilyKeyText('fk', `${text.trimEnd()}\r\n`)).toHaveLength(32);
  });

  it.each([
    ['empty', ''],
    ['too short', 'abc\n'],
    ['padded base64', `${Buffer.alloc(32, 7).toString('base64')}\n`],
    ['two lines', `${Buffer.alloc(32, 7).toString('base64url')}\n\n`],
    ['hex', `${Buffer.alloc(32, 7).toString('hex')}\n`],
    ['a non-canonical last character', `${'A'.repeat(42)}B\n`],
  ])('refuses %s, without repeating the text', (_, text) => {
    let caught: unknown;
    try {
      parseFamilyKeyText('/etc/powbridge/family.key', text);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(FamilyKeyFileError);
    const message = (caught as Error).message;
    expect(message).toMatch(
      /^\/etc\/powbridge\/family\.key: not a family key \(expected 32 bytes in base64url on one line; make one with: powbridge keys family-key --out <file>\)$/,
    );
  });
});

/** Resolves once `check` holds (polling; a hang is caught by the test's own timeout). */
async function until(check: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await check())) await new Promise((resolve) => setTimeout(resolve, 20));
}

describe('the key vault in PostgreSQL', () => {
  const server = usePostgres();
  const keyText = (n: number) =>
    `{"format":"powbridge-ticket-key","secretKey":"${String(n).repeat(64).slice(0, 64)}"}\n`;
  const ticket = (keyId: string, n: number, notAfterDay = 20_030): VaultKey => ({
    kind: 'ticket',
    keyId,
    scheme: 'rsapbssa-sha384-pss-deterministic',
    notBeforeDay: 20_000,
    notAfterDay,
    publicKey: 'abcd',
    text: keyText(n),
  });
  const openVault = async (url: string, seed = 'family') => {
    const database = await PostgresDatabase.open({ url, password: server().password });
    return { database, vault: new PostgresKeyVault(database, new FamilyKey(secret(seed))) };
  };

  it('keeps public parts in clear and the key text only sealed; another instance opens it', async () => {
    const url = await server().createDatabase();
    const a = await openVault(url);
    const b = await openVault(url);
    try {
      expect(await a.vault.generation()).toBe(0);
      await a.vault.locked(async (session) => {
        expect(await session.keys()).toEqual([]);
        await session.put(ticket('00000000000000a1', 7));
        await session.put(ticket('00000000000000b2', 8));
      });
      expect(await a.vault.generation()).toBe(2);
      const seen = await b.vault.locked((session) => session.keys());
      expect(seen).toEqual([ticket('00000000000000a1', 7), ticket('00000000000000b2', 8)]);
      // Replaced (a shortened last day): re-sealed with a new nonce; removed: gone.
      const before = await query<{ nonce: Buffer }>(
        url,
        server().password,
        "SELECT nonce FROM key_vault WHERE key_id = '00000000000000a1'",
      );
      await b.vault.locked(async (session) => {
        await session.put(ticket('00000000000000a1', 7, 20_010));
        await session.remove('ticket', '00000000000000b2');
      });
      const rows = await query<Record<string, unknown>>(
        url,
        server().password,
        'SELECT kind, key_id, scheme, not_before_day, not_after_day, public_key, nonce FROM key_vault',
      );
      expect(rows).toEqual([
        {
          kind: 'ticket',
          key_id: '00000000000000a1',
          scheme: 'rsapbssa-sha384-pss-deterministic',
          not_before_day: '20000',
          not_after_day: '20010',
          public_key: 'abcd',
          nonce: expect.any(Buffer) as Buffer,
        },
      ]);
      expect((rows[0]?.nonce as Buffer).equals(before[0]?.nonce ?? Buffer.alloc(0))).toBe(false);
      expect(await a.vault.locked((session) => session.keys())).toEqual([
        ticket('00000000000000a1', 7, 20_010),
      ]);
      // No row holds the text in clear, in any encoding PostgreSQL would show it.
      const dump = JSON.stringify(
        await query(
          url,
          server().password,
          "SELECT encode(sealed, 'escape') AS s, * FROM key_vault",
        ),
      );
      expect(dump).not.toContain('secretKey');
      expect(dump).not.toContain(Buffer.from(keyText(7)).toString('hex'));
    } finally {
      await a.database.close();
      await b.database.close();
    }
  });

  it('refuses a wrong family key, a tampered row and a row moved to another key id', async () => {
    const url = await server().createDatabase();
    const right = await openVault(url);
    const wrong = await openVault(url, 'another family');
    try {
      await right.vault.locked((session) => session.put(ticket('00000000000000a1', 7)));
      await expect(wrong.vault.locked((session) => session.keys())).rejects.toThrow(
        new FamilyKeyMismatchError(
          'the family key does not open the keys in the database: every instance of a family ' +
            'needs the same storage.familyKeyFile (copy it from an instance that runs)',
        ),
      );
      // Nor may it add keys under its own key.
      await expect(
        wrong.vault.locked((session) => session.put(ticket('00000000000000b2', 8))),
      ).rejects.toBeInstanceOf(FamilyKeyMismatchError);

      // One bit of the ciphertext flipped.
      await query(
        url,
        server().password,
        `UPDATE key_vault SET sealed = set_byte(sealed, 3, get_byte(sealed, 3) # 1)`,
      );
      await expect(right.vault.locked((session) => session.keys())).rejects.toThrow(
        /^ticket key 00000000000000a1 in the database does not open under the family key that opens the others: its row was changed or damaged/,
      );
      await query(
        url,
        server().password,
        `UPDATE key_vault SET sealed = set_byte(sealed, 3, get_byte(sealed, 3) # 1)`,
      );
      expect(await right.vault.locked((session) => session.keys())).toHaveLength(1);

      // A valid sealed key under another key id's row.
      await right.vault.locked((session) => session.put(ticket('00000000000000b2', 8)));
      await query(
        url,
        server().password,
        `UPDATE key_vault SET (nonce, sealed) =
           (SELECT nonce, sealed FROM key_vault WHERE key_id = '00000000000000a1')
         WHERE key_id = '00000000000000b2'`,
      );
      await expect(right.vault.locked((session) => session.keys())).rejects.toBeInstanceOf(
        KeyVaultDamagedError,
      );

      // Emptied (a family changing its family key): the first key stored takes the vault over.
      await query(url, server().password, 'DELETE FROM key_vault');
      await wrong.vault.locked((session) => session.put(ticket('00000000000000c3', 9)));
      expect(await wrong.vault.locked((session) => session.keys())).toHaveLength(1);
      await expect(right.vault.locked((session) => session.keys())).rejects.toBeInstanceOf(
        FamilyKeyMismatchError,
      );
    } finally {
      await right.database.close();
      await wrong.database.close();
    }
  });

  it('rolls back what a failed session wrote, and takes one session at a time', async () => {
    const url = await server().createDatabase();
    const a = await openVault(url);
    const b = await openVault(url);
    try {
      await expect(
        a.vault.locked(async (session) => {
          await session.put(ticket('00000000000000a1', 7));
          throw new Error('upkeep failed');
        }),
      ).rejects.toThrow('upkeep failed');
      expect(await a.vault.generation()).toBe(0);
      // B waits for A's lock: what A writes while holding it is there when B looks.
      const order: string[] = [];
      let release: () => void = () => {};
      const held = new Promise<void>((resolve) => {
        release = resolve;
      });
      const first = a.vault.locked(async (session) => {
        order.push('a in');
        await held;
        await session.put(ticket('00000000000000a1', 7));
        order.push('a out');
      });
      await until(() => order.includes('a in'));
      const second = b.vault.locked(async (session) => {
        order.push('b in');
        return session.keys();
      });
      // B is queued on the advisory lock A holds.
      await until(async () => {
        const [row] = await query<{ n: number }>(
          url,
          server().password,
          "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
        );
        return row?.n === 1;
      });
      expect(order).toEqual(['a in']);
      release();
      const [, keys] = await Promise.all([first, second]);
      expect(order).toEqual(['a in', 'a out', 'b in']);
      expect(keys.map((k) => k.keyId)).toEqual(['00000000000000a1']);
    } finally {
      await a.database.close();
      await b.database.close();
    }
  });
});
