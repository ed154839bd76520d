import { watch as fsWatch } from 'node:fs';
import { access, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { bytesToHex } from '@noble/hashes/utils.js';
import type { TicketSchemeName } from '../protocol/messages.js';
import { SCHEME_NAMES } from './descriptor.js';
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
  type KnownKeys,
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
  type IssuingRsaKey,
  type Keyring,
  type KeyValidity,
  TICKET_SCHEME_KINDS,
  type TicketScheme,
  utcDay,
} from './keyring.js';
import { generateRsaKeyAsync } from './rsa-keygen.js';
import type { RsaPrivateKey } from './rsa-scheme.js';
import { generateSignerKey } from './scheme.js';

export { IDENTITY_FILE, type RelayIdentity };

/**
 * The relay's keys on disk (docs/design.md §6.4), under `<dataDir>/keys/` (0700):
 * - `identity.json`: the relay's Ed25519 identity, which signs the descriptor. Separate from
 *   Tor's keys, so rotating one never touches the other.
 * - `ticket-<keyId>.json`: one ticket key each, of either scheme (an Abe–Okamoto ristretto255
 *   scalar, or an RSA master key's safe primes, docs/design.md §6.5), with its validity in UTC
 *   days (inclusive): the days on which it issues tickets.
 * Files are 0600 JSON (format: key-format.ts), written atomically (key-files.ts); a file
 * with looser permissions is refused.
 *
 * Invariant: within a scheme, validity ranges never overlap, so every day has at most one
 * issuing key of each scheme. Two keys of a scheme issuing on one day would split that day's
 * users into two groups a relay could tell apart (and clients refuse descriptors that list
 * two, see key-pin.ts). Keys of the other scheme may overlap: the store makes keys only for
 * its own scheme (`tickets.scheme`), so a relay switched from "ao" to "rsa" gets an RSA key
 * for today and keeps its Abe–Okamoto keys, whose tickets stay redeemable, until they expire.
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
  /** The scheme's wire name (docs/design.md §6.4). */
  scheme: TicketSchemeName;
  /** Lowercase hex: the 32-byte ristretto255 point (AO) or the SPKI DER (RSA). */
  publicKey: string;
}

/** The scheme a store makes keys for unless told otherwise (`tickets.scheme`'s default). */
export const DEFAULT_TICKET_SCHEME: TicketScheme = 'rsa';

export interface KeyStoreOptions {
  /** Current unix time in seconds. */
  now: () => number;
  /** CSPRNG for the identity and Abe–Okamoto keys; fixed bytes in tests. */
  random?: RandomBytes;
  /** Issuing days of the first ticket key (create/open on first start). */
  lifetimeDays?: number;
  /** The scheme the relay issues with: create, renew and maintain make keys of it only. */
  scheme?: TicketScheme;
  /**
   * Makes an RSA master key (default: two safe primes found off the event loop, seconds of
   * CPU); tests pass pre-generated keys.
   */
  generateRsaKey?: () => Promise<RsaPrivateKey>;
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
    scheme: SCHEME_NAMES[stored.scheme],
    publicKey: bytesToHex(stored.scheme === 'rsa' ? stored.key.spki : encodePoint(stored.key.y)),
    notBeforeDay: stored.notBeforeDay,
    notAfterDay: stored.notAfterDay,
  };
}

/** Oldest first; keys starting on one day (one per scheme) in a fixed order. */
function byStart(a: StoredKey, b: StoredKey): number {
  return (
    a.notBeforeDay - b.notBeforeDay ||
    a.scheme.localeCompare(b.scheme) ||
    a.keyIdHex.localeCompare(b.keyIdHex)
  );
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

/**
 * Read and check every key file; refuse overlapping validity within a scheme (two issuing keys
 * of one scheme for a day).
 */
async function readKeys(
  keysDir: string,
  known: KnownKeys = new Map(),
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
  keys.sort(byStart);
  for (const scheme of TICKET_SCHEME_KINDS) {
    const same = keys.filter((k) => k.scheme === scheme);
    for (let i = 1; i < same.length; i++) {
      const [prev, next] = [same[i - 1] as StoredKey, same[i] as StoredKey];
      if (next.notBeforeDay <= prev.notAfterDay) {
        throw new KeyStoreError(
          `${keysDir}: ${scheme} ticket keys ${prev.keyIdHex} and ${next.keyIdHex} are both ` +
            `valid on ${dayDate(next.notBeforeDay)}; a day must have one issuing key of each ` +
            `scheme (remove or fix one)`,
        );
      }
    }
  }
  return { identity, keys };
}

export interface Rotation {
  /** The new key; it issues from tomorrow (or today if no key of its scheme issues today). */
  created: TicketKeyInfo;
  /** The key of that scheme that issued today, now ending today; null if none issued today. */
  retired: TicketKeyInfo | null;
}

export class KeyStore implements Keyring {
  private keys: StoredKey[];
  private readonly random: RandomBytes;
  private readonly generateRsaKey: () => Promise<RsaPrivateKey>;
  private readonly now: () => number;
  /** The scheme this store makes keys for (the relay's `tickets.scheme`). */
  readonly scheme: TicketScheme;

  private constructor(
    /** `<dataDir>/keys` */
    readonly dir: string,
    private readonly identityKey: RelayIdentity,
    keys: StoredKey[],
    options: KeyStoreOptions,
  ) {
    this.keys = keys;
    this.now = options.now;
    this.random = options.random ?? csprng;
    this.scheme = options.scheme ?? DEFAULT_TICKET_SCHEME;
    this.generateRsaKey = options.generateRsaKey ?? (() => generateRsaKeyAsync());
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
    return new KeyStore(keysDir, identity, keys, options);
  }

  /**
   * Generate an identity and one ticket key of the store's scheme valid from today; refuses to
   * touch a directory that already holds keys (overwriting them would strand every ticket
   * issued with them).
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
      const store = new KeyStore(keysDir, identity, [], options);
      const today = store.today();
      // The ticket key is made before anything is written: an RSA key takes seconds.
      const key = await store.makeKey(store.scheme, today, today + lifetime - 1);
      // Identity first: a crash before the ticket key leaves a store that loads, and
      // `maintain` then adds the missing key.
      await writePrivateFile(keysDir, IDENTITY_FILE, identityText(secret, identity));
      await store.addKey(key);
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

  /**
   * The Abe–Okamoto key issuing on `day`: validity ranges of a scheme never overlap, so there
   * is at most one.
   */
  issuingKey(day: number): IssuingKey | null {
    const stored = this.keyOn('ao', day);
    return stored?.scheme === 'ao'
      ? { key: stored.key, notBeforeDay: stored.notBeforeDay, notAfterDay: stored.notAfterDay }
      : null;
  }

  /** The RSA master key issuing on `day`, if any (at most one). */
  issuingRsaKey(day: number): IssuingRsaKey | null {
    const stored = this.keyOn('rsa', day);
    return stored?.scheme === 'rsa'
      ? { key: stored.key, notBeforeDay: stored.notBeforeDay, notAfterDay: stored.notAfterDay }
      : null;
  }

  /** Is `keyIdHex` one of the ticket keys we hold (either scheme, valid or not)? */
  holdsKey(keyIdHex: string): boolean {
    return this.keys.some((k) => k.keyIdHex === keyIdHex);
  }

  /**
   * One of our keys, of either scheme, if it can still verify tickets today: from its first
   * issuing day to the day after its last (a ticket is redeemable on its issue day and the
   * next). Public parts only.
   */
  acceptedKey(keyIdHex: string): AcceptedKey | undefined {
    const stored = this.keys.find((k) => k.keyIdHex === keyIdHex);
    if (!stored) return undefined;
    const today = this.today();
    if (today < stored.notBeforeDay || today > stored.notAfterDay + REDEEM_GRACE_DAYS) {
      return undefined;
    }
    const common = {
      notBeforeDay: stored.notBeforeDay,
      notAfterDay: stored.notAfterDay,
      owner: 'self',
    };
    if (stored.scheme === 'rsa') {
      const { n, e, spki, keyId } = stored.key;
      return { scheme: 'rsa', key: { n, e, spki, keyId }, ...common };
    }
    return { scheme: 'ao', key: { y: stored.key.y, keyId: stored.key.keyId }, ...common };
  }

  /**
   * Replace the issuing key of a scheme (default: the store's). The key of that scheme issuing
   * today keeps issuing until the end of today and the new key starts tomorrow, because
   * - tickets already issued today carry today's day and the old key id: the old key must
   *   stay valid for today (and accepted tomorrow) or they are stranded;
   * - starting the new key today would give today two issuing keys of the scheme, splitting
   *   today's users into two groups the relay can tell apart.
   * If no key of the scheme issues today (all expired), nothing can be stranded and the new
   * key starts today. A second rotation before the new key has started is refused: that key
   * has issued nothing yet and is already the replacement.
   *
   * The new key is made first (an RSA key takes seconds); then the old key's file is
   * shortened before the new key is written, so a crash in between leaves a day without a key
   * (which `maintain` fills), never two keys of a scheme for a day.
   */
  async rotate(options: { scheme?: TicketScheme; lifetimeDays?: number } = {}): Promise<Rotation> {
    const lifetime = checkDays(options.lifetimeDays ?? DEFAULT_LIFETIME_DAYS, 'lifetimeDays', 1);
    const scheme = options.scheme ?? this.scheme;
    return this.mutate(async () => {
      const today = this.today();
      const pending = this.keysOf(scheme).find((k) => k.notBeforeDay > today);
      if (pending) {
        throw new KeyStoreError(
          `${scheme} ticket key ${pending.keyIdHex} already takes over on ` +
            `${dayDate(pending.notBeforeDay)}; rotate again after that day`,
        );
      }
      const current = this.keyOn(scheme, today);
      const start = current ? today + 1 : today;
      const key = await this.makeKey(scheme, start, start + lifetime - 1);
      if (current && current.notAfterDay > today) {
        await this.writeKey({ ...current, notAfterDay: today });
      }
      const created = await this.addKey(key);
      const retired = current ? this.keys.find((k) => k.keyIdHex === current.keyIdHex) : undefined;
      return { created, retired: retired ? publicInfo(retired) : null };
    });
  }

  /**
   * Make sure a key of the store's scheme issues today and that its next key exists
   * `leadDays` before the newest one ends, so the descriptor lists a key before it is used and
   * clients can pin it early.
   */
  async renew(
    options: { leadDays?: number; lifetimeDays?: number } = {},
  ): Promise<TicketKeyInfo[]> {
    return this.mutate(() => this.renewUnlocked(options));
  }

  /** Delete keys of either scheme whose tickets can no longer be redeemed (after notAfterDay + 1). */
  async prune(): Promise<string[]> {
    return this.mutate(() => this.pruneUnlocked());
  }

  /**
   * Daily upkeep for a running relay: re-read the files (a `powbridge keys rotate` may have
   * changed them), renew, prune. A new RSA key is made off the event loop.
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

  /** Keys of one scheme, oldest first. */
  private keysOf(scheme: TicketScheme): StoredKey[] {
    return this.keys.filter((k) => k.scheme === scheme);
  }

  private keyOn(scheme: TicketScheme, day: number): StoredKey | undefined {
    return this.keys.find((k) => k.scheme === scheme && validOn(k, day));
  }

  private async renewUnlocked(options: {
    leadDays?: number;
    lifetimeDays?: number;
  }): Promise<TicketKeyInfo[]> {
    const lead = checkDays(options.leadDays ?? DEFAULT_LEAD_DAYS, 'leadDays', 0);
    const lifetime = checkDays(options.lifetimeDays ?? DEFAULT_LIFETIME_DAYS, 'lifetimeDays', 1);
    const scheme = this.scheme;
    const today = this.today();
    const created: TicketKeyInfo[] = [];
    if (!this.keyOn(scheme, today)) {
      // Fill today without running into a later key (only hand edits leave such a gap).
      const next = this.keysOf(scheme).find((k) => k.notBeforeDay > today);
      const end = Math.min(today + lifetime - 1, next ? next.notBeforeDay - 1 : Infinity);
      created.push(await this.addKey(await this.makeKey(scheme, today, end)));
    }
    for (;;) {
      const last = this.keysOf(scheme).at(-1);
      if (!last || last.notAfterDay >= today + lead) break;
      const key = await this.makeKey(scheme, last.notAfterDay + 1, last.notAfterDay + lifetime);
      created.push(await this.addKey(key));
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

  /** A new key of `scheme` for the given days, in memory only. */
  private async makeKey(
    scheme: TicketScheme,
    notBeforeDay: number,
    notAfterDay: number,
  ): Promise<StoredKey> {
    const days = { notBeforeDay, notAfterDay };
    if (scheme === 'rsa') {
      const key = await this.generateRsaKey();
      return { scheme, key, keyIdHex: bytesToHex(key.keyId), ...days };
    }
    const key = generateSignerKey(this.random);
    return { scheme, key, keyIdHex: bytesToHex(key.keyId), ...days };
  }

  private async addKey(stored: StoredKey): Promise<TicketKeyInfo> {
    if (this.keys.some((k) => k.keyIdHex === stored.keyIdHex)) {
      throw new KeyStoreError(`new ticket key id ${stored.keyIdHex} collides with a held key`);
    }
    await this.writeKey(stored);
    return publicInfo(stored);
  }

  /** Write (or rewrite) a key file, then update memory to match. */
  private async writeKey(stored: StoredKey): Promise<void> {
    await writePrivateFile(this.dir, ticketFileName(stored.keyIdHex), ticketKeyText(stored));
    this.keys = [...this.keys.filter((k) => k.keyIdHex !== stored.keyIdHex), stored].sort(byStart);
  }
}
