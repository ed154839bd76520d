import { watch as fsWatch } from 'node:fs';
import { access, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { bytesToHex } from '@noble/hashes/utils.js';
import { csprng, encodePoint, type RandomBytes } from './group.js';
import {
  checkPrivateDir,
  ensurePrivateDir,
  readPrivateFile,
  removeFile,
  withLock,
  writePrivateFile,
} from './key-files.js';
import {
  IDENTITY_FILE,
  identityText,
  isKeyFileName,
  makeIdentity,
  parseIdentity,
  parseTicketKey,
  type RelayIdentity,
  type StoredKey,
  ticketFileName,
  ticketKeyText,
} from './key-format.js';
import {
  type AcceptedKey,
  type IssuingKey,
  type Keyring,
  type KeyValidity,
  utcDay,
} from './keyring.js';
import { generateSignerKey, type SignerKey } from './scheme.js';

export { IDENTITY_FILE, type RelayIdentity };

/**
 * The relay's keys on disk (docs/design.md §6.4), under `<dataDir>/keys/` (0700):
 * - `identity.json`: the relay's Ed25519 identity, which signs the descriptor. Separate from
 *   Tor's keys, so rotating one never touches the other.
 * - `ticket-<keyId>.json`: one ticket key each (ristretto255 secret scalar, 32 bytes LE, hex),
 *   with its validity in UTC days (inclusive): the days on which it issues tickets.
 * Files are 0600 JSON (format: key-format.ts), written atomically (key-files.ts); a file
 * with looser permissions is refused.
 *
 * Invariant: validity ranges never overlap, so every day has at most one issuing key. Two
 * keys issuing on one day would split that day's users into two groups a relay could tell
 * apart (and clients refuse descriptors that list two keys for a day, see key-pin.ts).
 *
 * A ticket is redeemable on its issue day and the next (docs/design.md §6.3), so a key that stops
 * issuing after day N is still accepted for verification on day N + 1 and dropped after
 * that (prune deletes its file).
 */

export const KEYS_DIR = 'keys';
export const DEFAULT_LIFETIME_DAYS = 30;
export const MAX_LIFETIME_DAYS = 366;
/** `renew` creates the next key this many days before the newest one ends. */
export const DEFAULT_LEAD_DAYS = 7;
/** Days after its issue day on which a ticket is still redeemable (docs/design.md §6.3). */
export const REDEEM_GRACE_DAYS = 1;

export class KeyStoreError extends Error {
  override name = 'KeyStoreError';
}

/** Public half of a ticket key, as shown by `keys show` and listed in the descriptor. */
export interface TicketKeyInfo extends KeyValidity {
  /** 8 bytes, lowercase hex. */
  keyId: string;
  /** 32-byte ristretto255 encoding, lowercase hex. */
  publicKey: string;
}

export interface KeyStoreOptions {
  /** Current unix time in seconds. */
  now: () => number;
  /** CSPRNG; fixed bytes in tests. */
  random?: RandomBytes;
  /** Issuing days of the first ticket key (create/open on first start). */
  lifetimeDays?: number;
}

/** "YYYY-MM-DD" of a UTC day number. */
export function dayDate(dayNumber: number): string {
  return new Date(dayNumber * 86_400_000).toISOString().slice(0, 10);
}

function checkDays(value: number, what: string, min: number): number {
  if (!Number.isInteger(value) || value < min || value > MAX_LIFETIME_DAYS) {
    throw new KeyStoreError(`${what} must be an integer from ${min} to ${MAX_LIFETIME_DAYS}`);
  }
  return value;
}

function publicInfo(stored: StoredKey): TicketKeyInfo {
  return {
    keyId: stored.keyIdHex,
    publicKey: bytesToHex(encodePoint(stored.key.y)),
    notBeforeDay: stored.notBeforeDay,
    notAfterDay: stored.notAfterDay,
  };
}

function validOn(k: KeyValidity, dayNumber: number): boolean {
  return k.notBeforeDay <= dayNumber && dayNumber <= k.notAfterDay;
}

/** False only when missing; other errors surface later with their own message. */
async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    (err: NodeJS.ErrnoException) => err.code !== 'ENOENT',
  );
}

async function keyFileNames(keysDir: string): Promise<string[]> {
  const names = await readdir(keysDir);
  return names.filter(isKeyFileName);
}

/** Read and check every key file; refuse overlapping validity (two issuing keys for a day). */
async function readKeys(
  keysDir: string,
  known: ReadonlyMap<string, SignerKey> = new Map(),
): Promise<{ identity: RelayIdentity | null; keys: StoredKey[] }> {
  await checkPrivateDir(keysDir);
  const names = (await keyFileNames(keysDir)).sort();
  let identity: RelayIdentity | null = null;
  const keys: StoredKey[] = [];
  for (const name of names) {
    const file = join(keysDir, name);
    const text = await readPrivateFile(file);
    if (name === IDENTITY_FILE) identity = parseIdentity(file, text);
    else keys.push(parseTicketKey(file, name, text, known));
  }
  keys.sort((a, b) => a.notBeforeDay - b.notBeforeDay);
  for (let i = 1; i < keys.length; i++) {
    const [prev, next] = [keys[i - 1] as StoredKey, keys[i] as StoredKey];
    if (next.notBeforeDay <= prev.notAfterDay) {
      throw new KeyStoreError(
        `${keysDir}: ticket keys ${prev.keyIdHex} and ${next.keyIdHex} are both valid on ` +
          `${dayDate(next.notBeforeDay)}; a day must have one issuing key (remove or fix one)`,
      );
    }
  }
  return { identity, keys };
}

export interface Rotation {
  /** The new key; it issues from tomorrow (or today if no key issues today). */
  created: TicketKeyInfo;
  /** The key that issued today, now ending today; null if none issued today. */
  retired: TicketKeyInfo | null;
}

export class KeyStore implements Keyring {
  private keys: StoredKey[];
  private readonly random: RandomBytes;

  private constructor(
    /** `<dataDir>/keys` */
    readonly dir: string,
    private readonly identityKey: RelayIdentity,
    keys: StoredKey[],
    private readonly now: () => number,
    random: RandomBytes | undefined,
  ) {
    this.keys = keys;
    this.random = random ?? csprng;
  }

  /** Load the keys, or create them if `<dataDir>/keys` holds none (first start). */
  static async open(dataDir: string, options: KeyStoreOptions): Promise<KeyStore> {
    const keysDir = join(dataDir, KEYS_DIR);
    await ensurePrivateDir(keysDir);
    if ((await keyFileNames(keysDir)).length === 0) return KeyStore.create(dataDir, options);
    return KeyStore.load(dataDir, options);
  }

  /** Load existing keys; fails if there are none. */
  static async load(dataDir: string, options: KeyStoreOptions): Promise<KeyStore> {
    const keysDir = join(dataDir, KEYS_DIR);
    if (!(await exists(keysDir))) {
      throw new KeyStoreError(`${keysDir}: no keys; create them with: powbridge keys generate`);
    }
    const { identity, keys } = await readKeys(keysDir);
    if (!identity) {
      throw new KeyStoreError(
        `${keysDir}: no ${IDENTITY_FILE}; create keys with: powbridge keys generate`,
      );
    }
    return new KeyStore(keysDir, identity, keys, options.now, options.random);
  }

  /**
   * Generate an identity and one ticket key valid from today; refuses to touch a directory
   * that already holds keys (overwriting them would strand every ticket issued with them).
   */
  static async create(dataDir: string, options: KeyStoreOptions): Promise<KeyStore> {
    const lifetime = checkDays(options.lifetimeDays ?? DEFAULT_LIFETIME_DAYS, 'lifetimeDays', 1);
    const keysDir = join(dataDir, KEYS_DIR);
    await ensurePrivateDir(keysDir);
    return withLock(keysDir, async () => {
      if ((await keyFileNames(keysDir)).length > 0) {
        throw new KeyStoreError(
          `${keysDir}: keys already exist; refusing to overwrite them ` +
            `(for a new ticket key use: powbridge keys rotate)`,
        );
      }
      const random = options.random ?? csprng;
      const secret = random(32);
      if (secret.length !== 32) throw new KeyStoreError('random source returned too few bytes');
      const identity = makeIdentity(secret);
      // Identity first: a crash before the ticket key leaves a store that loads, and
      // `maintain` then adds the missing key.
      await writePrivateFile(keysDir, IDENTITY_FILE, identityText(secret, identity));
      const store = new KeyStore(keysDir, identity, [], options.now, options.random);
      const today = store.today();
      await store.addKey(today, today + lifetime - 1);
      return store;
    });
  }

  get identity(): RelayIdentity {
    return this.identityKey;
  }

  today(): number {
    return utcDay(this.now());
  }

  /** Public parts of every key held, oldest first. */
  ticketKeys(): TicketKeyInfo[] {
    return this.keys.map(publicInfo);
  }

  /** The key issuing on `day`: validity ranges never overlap, so there is at most one. */
  issuingKey(day: number): IssuingKey | null {
    const stored = this.keys.find((k) => validOn(k, day));
    return stored
      ? { key: stored.key, notBeforeDay: stored.notBeforeDay, notAfterDay: stored.notAfterDay }
      : null;
  }

  /** Is `keyIdHex` one of the ticket keys we hold (valid or not)? */
  holdsKey(keyIdHex: string): boolean {
    return this.keys.some((k) => k.keyIdHex === keyIdHex);
  }

  /**
   * One of our keys, if it can still verify tickets today: from its first issuing day to the
   * day after its last (a ticket is redeemable on its issue day and the next).
   */
  acceptedKey(keyIdHex: string): AcceptedKey | undefined {
    const stored = this.keys.find((k) => k.keyIdHex === keyIdHex);
    if (!stored) return undefined;
    const today = this.today();
    if (today < stored.notBeforeDay || today > stored.notAfterDay + REDEEM_GRACE_DAYS) {
      return undefined;
    }
    return {
      key: { y: stored.key.y, keyId: stored.key.keyId },
      notBeforeDay: stored.notBeforeDay,
      notAfterDay: stored.notAfterDay,
      owner: 'self',
    };
  }

  /**
   * Replace the issuing key. The key issuing today keeps issuing until the end of today and
   * the new key starts tomorrow, because
   * - tickets already issued today carry today's day and the old key id: the old key must
   *   stay valid for today (and accepted tomorrow) or they are stranded;
   * - starting the new key today would give today two issuing keys, splitting today's users
   *   into two groups the relay can tell apart.
   * If no key issues today (all expired), nothing can be stranded and the new key starts
   * today. A second rotation before the new key has started is refused: that key has issued
   * nothing yet and is already the replacement.
   *
   * The old key's file is shortened before the new key is written, so a crash in between
   * leaves a day without a key (which `maintain` fills), never two keys for a day.
   */
  async rotate(options: { lifetimeDays?: number } = {}): Promise<Rotation> {
    const lifetime = checkDays(options.lifetimeDays ?? DEFAULT_LIFETIME_DAYS, 'lifetimeDays', 1);
    return this.mutate(async () => {
      const today = this.today();
      const pending = this.keys.find((k) => k.notBeforeDay > today);
      if (pending) {
        throw new KeyStoreError(
          `ticket key ${pending.keyIdHex} already takes over on ${dayDate(pending.notBeforeDay)}; ` +
            `rotate again after that day`,
        );
      }
      const current = this.keys.find((k) => validOn(k, today));
      if (current && current.notAfterDay > today) {
        await this.writeKey({ ...current, notAfterDay: today });
      }
      const start = current ? today + 1 : today;
      const created = await this.addKey(start, start + lifetime - 1);
      const retired = current ? this.keys.find((k) => k.keyIdHex === current.keyIdHex) : undefined;
      return { created, retired: retired ? publicInfo(retired) : null };
    });
  }

  /**
   * Make sure a key issues today and that the next key exists `leadDays` before the newest
   * one ends, so the descriptor lists a key before it is used and clients can pin it early.
   */
  async renew(
    options: { leadDays?: number; lifetimeDays?: number } = {},
  ): Promise<TicketKeyInfo[]> {
    return this.mutate(() => this.renewUnlocked(options));
  }

  /** Delete keys whose tickets can no longer be redeemed (after notAfterDay + 1). */
  async prune(): Promise<string[]> {
    return this.mutate(() => this.pruneUnlocked());
  }

  /**
   * Daily upkeep for a running relay: re-read the files (a `powbridge keys rotate` may have
   * changed them), renew, prune.
   */
  async maintain(
    options: { leadDays?: number; lifetimeDays?: number } = {},
  ): Promise<{ created: TicketKeyInfo[]; pruned: string[] }> {
    return this.mutate(async () => {
      const created = await this.renewUnlocked(options);
      const pruned = await this.pruneUnlocked();
      return { created, pruned };
    });
  }

  /** Re-read the key files (another process may have rotated). */
  async reload(): Promise<void> {
    const known = new Map(this.keys.map((k) => [k.keyIdHex, k.key]));
    const { identity, keys } = await readKeys(this.dir, known);
    if (!identity || identity.publicKeyHex !== this.identityKey.publicKeyHex) {
      throw new KeyStoreError(`${this.dir}: the relay identity changed on disk; restart the relay`);
    }
    this.keys = keys;
  }

  /**
   * Reload whenever a file in the key directory changes, so a `powbridge keys rotate` next to
   * a running relay takes effect within moments rather than at the next `maintain`: the
   * rotated key stops issuing at midnight, and a relay still holding the old view after that
   * would issue with it on a day that now belongs to the new key. Returns a stop function.
   */
  watch(onError: (err: unknown) => void, debounceMs = 100): () => void {
    let timer: NodeJS.Timeout | undefined;
    const watcher = fsWatch(this.dir, () => {
      clearTimeout(timer);
      timer = setTimeout(() => void this.reload().catch(onError), debounceMs);
    });
    watcher.on('error', onError);
    return () => {
      clearTimeout(timer);
      watcher.close();
    };
  }

  /** Public view only, so logging the store can never print a secret. */
  toJSON(): { dir: string; identity: string; ticketKeys: TicketKeyInfo[] } {
    return {
      dir: this.dir,
      identity: this.identityKey.publicKeyHex,
      ticketKeys: this.ticketKeys(),
    };
  }

  [inspect.custom](): string {
    return `KeyStore ${JSON.stringify(this.toJSON())}`;
  }

  private async renewUnlocked(options: {
    leadDays?: number;
    lifetimeDays?: number;
  }): Promise<TicketKeyInfo[]> {
    const lead = checkDays(options.leadDays ?? DEFAULT_LEAD_DAYS, 'leadDays', 0);
    const lifetime = checkDays(options.lifetimeDays ?? DEFAULT_LIFETIME_DAYS, 'lifetimeDays', 1);
    const today = this.today();
    const created: TicketKeyInfo[] = [];
    if (!this.keys.some((k) => validOn(k, today))) {
      // Fill today without running into a later key (only hand edits leave such a gap).
      const next = this.keys.find((k) => k.notBeforeDay > today);
      const end = Math.min(today + lifetime - 1, next ? next.notBeforeDay - 1 : Infinity);
      created.push(await this.addKey(today, end));
    }
    for (;;) {
      const last = this.keys.at(-1) as StoredKey;
      if (last.notAfterDay >= today + lead) break;
      created.push(await this.addKey(last.notAfterDay + 1, last.notAfterDay + lifetime));
    }
    return created;
  }

  private async pruneUnlocked(): Promise<string[]> {
    const today = this.today();
    const expired = this.keys.filter((k) => today > k.notAfterDay + REDEEM_GRACE_DAYS);
    for (const k of expired) {
      await removeFile(this.dir, ticketFileName(k.keyIdHex));
      this.keys = this.keys.filter((other) => other !== k);
    }
    return expired.map((k) => k.keyIdHex);
  }

  /** Changes happen under the lock, on a fresh read of the files; on failure, re-read. */
  private mutate<T>(change: () => Promise<T>): Promise<T> {
    return withLock(this.dir, async () => {
      await this.reload();
      try {
        return await change();
      } catch (err) {
        await this.reload().catch(() => undefined);
        throw err;
      }
    });
  }

  private async addKey(notBeforeDay: number, notAfterDay: number): Promise<TicketKeyInfo> {
    const key = generateSignerKey(this.random);
    const stored: StoredKey = { key, keyIdHex: bytesToHex(key.keyId), notBeforeDay, notAfterDay };
    if (this.keys.some((k) => k.keyIdHex === stored.keyIdHex)) {
      throw new KeyStoreError(`new ticket key id ${stored.keyIdHex} collides with a held key`);
    }
    await this.writeKey(stored);
    return publicInfo(stored);
  }

  /** Write (or rewrite) a key file, then update memory to match. */
  private async writeKey(stored: StoredKey): Promise<void> {
    await writePrivateFile(this.dir, ticketFileName(stored.keyIdHex), ticketKeyText(stored));
    this.keys = [...this.keys.filter((k) => k.keyIdHex !== stored.keyIdHex), stored].sort(
      (a, b) => a.notBeforeDay - b.notBeforeDay,
    );
  }
}
