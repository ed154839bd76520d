import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import { z } from 'zod';
import { decodeScalar, encodePoint, encodeScalar } from './group.js';
import { KeyFileError } from './key-files.js';
import type { KeyValidity } from './keyring.js';
import { RSA_SCHEME } from '../protocol/messages.js';
import { type RsaPrivateKey, rsaPrivateKey } from './rsa-scheme.js';
import { type SignerKey, signerKey } from './scheme.js';

/**
 * The key files' format (0600 JSON, one key per file, in `<dataDir>/keys/`):
 * - `identity.json`: {format: "powbridge-identity", version: 1, algorithm: "ed25519",
 *   secretKey: 32-byte seed (RFC 8032), publicKey}, both lowercase hex;
 * - `ticket-<keyId>.json`, an Abe–Okamoto key: {format: "powbridge-ticket-key", version: 1,
 *   scheme: "abe-okamoto-ristretto255", keyId, secretKey: scalar x (32 bytes LE), publicKey:
 *   y = g^x, notBeforeDay, notAfterDay} (UTC days, inclusive);
 * - `ticket-<keyId>.json`, an RSA key (docs/design.md §6.5): {format: "powbridge-ticket-key",
 *   version: 1, scheme: "rsapbssa-sha384-pss-deterministic", keyId, p, q (the 1024-bit safe
 *   primes, big-endian), publicKey: SPKI DER of (n = pq, e = 65537), notBeforeDay,
 *   notAfterDay}; keyId is the first 8 bytes of SHA-256(publicKey).
 * Public parts are stored beside the secrets and checked against them on load, so a damaged
 * or hand-edited file is refused instead of silently becoming another key.
 */

export const IDENTITY_FILE = 'identity.json';
const TICKET_FILE_RE = /^ticket-[0-9a-f]{16}\.json$/;

export function isKeyFileName(name: string): boolean {
  return name === IDENTITY_FILE || TICKET_FILE_RE.test(name);
}

export function ticketFileName(keyIdHex: string): string {
  return `ticket-${keyIdHex}.json`;
}

/** The relay's signing identity. The secret stays inside `sign`; it is not a property. */
export interface RelayIdentity {
  readonly publicKey: Uint8Array;
  readonly publicKeyHex: string;
  sign(message: Uint8Array): Uint8Array;
}

/** An Abe–Okamoto ticket key as held in memory: the signer key (with its window table). */
export interface StoredAoKey extends KeyValidity {
  scheme: 'ao';
  key: SignerKey;
  keyIdHex: string;
}

/** An RSA ticket master key as held in memory. */
export interface StoredRsaKey extends KeyValidity {
  scheme: 'rsa';
  key: RsaPrivateKey;
  keyIdHex: string;
}

export type StoredKey = StoredAoKey | StoredRsaKey;

const hex = (bytes: number) =>
  z.string().regex(new RegExp(`^[0-9a-f]{${bytes * 2}}$`), `expected ${bytes} bytes of hex`);
const day = z.number().int().min(0).max(0xffffffff);

const identityFileSchema = z.strictObject({
  format: z.literal('powbridge-identity'),
  version: z.literal(1),
  algorithm: z.literal('ed25519'),
  secretKey: hex(32),
  publicKey: hex(32),
});

const AO_FILE_SCHEME = 'abe-okamoto-ristretto255';
/** A 1024-bit prime is 128 bytes; a 2048-bit key's SPKI is 294. */
const PRIME_BYTES = 128;
const MAX_SPKI_BYTES = 600;

const ticketFileCommon = {
  format: z.literal('powbridge-ticket-key'),
  version: z.literal(1),
  keyId: hex(8),
  notBeforeDay: day,
  notAfterDay: day,
};
const ticketKeyFileSchema = z
  .discriminatedUnion(
    'scheme',
    [
      z.strictObject({
        ...ticketFileCommon,
        scheme: z.literal(AO_FILE_SCHEME),
        secretKey: hex(32),
        publicKey: hex(32),
      }),
      z.strictObject({
        ...ticketFileCommon,
        scheme: z.literal(RSA_SCHEME),
        p: hex(PRIME_BYTES),
        q: hex(PRIME_BYTES),
        publicKey: z
          .string()
          .regex(
            new RegExp(`^(?:[0-9a-f]{2}){1,${MAX_SPKI_BYTES}}$`),
            `expected at most ${MAX_SPKI_BYTES} bytes of hex`,
          ),
      }),
    ],
    { error: `expected "${AO_FILE_SCHEME}" or "${RSA_SCHEME}"` },
  )
  .refine((k) => k.notBeforeDay <= k.notAfterDay, {
    error: 'notBeforeDay must be <= notAfterDay',
    path: ['notAfterDay'],
  });
type TicketKeyFile = z.output<typeof ticketKeyFileSchema>;

function malformed(file: string, reason: string): KeyFileError {
  return new KeyFileError(`${file}: malformed key file: ${reason}`);
}

/**
 * Parse a key file's text. Errors name the field and the rule, never the value: JSON.parse's
 * own message quotes the input, and the input is a secret.
 */
function parseKeyFile<T>(schema: z.ZodType<T>, file: string, text: string): T {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw malformed(file, 'not JSON');
  }
  const result = schema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue?.path.join('.') || 'top level';
    throw malformed(
      file,
      `${where}: ${issue?.code === 'unrecognized_keys' ? 'unknown field' : (issue?.message ?? 'invalid')}`,
    );
  }
  return result.data;
}

export function makeIdentity(secret: Uint8Array): RelayIdentity {
  const publicKey = ed25519.getPublicKey(secret);
  const publicKeyHex = bytesToHex(publicKey);
  return {
    get publicKey() {
      return publicKey.slice();
    },
    publicKeyHex,
    sign: (message) => ed25519.sign(message, secret),
  };
}

export function identityText(secret: Uint8Array, identity: RelayIdentity): string {
  const data: z.input<typeof identityFileSchema> = {
    format: 'powbridge-identity',
    version: 1,
    algorithm: 'ed25519',
    secretKey: bytesToHex(secret),
    publicKey: identity.publicKeyHex,
  };
  return `${JSON.stringify(data, null, 2)}\n`;
}

export function parseIdentity(file: string, text: string): RelayIdentity {
  const data = parseKeyFile(identityFileSchema, file, text);
  const identity = makeIdentity(hexToBytes(data.secretKey));
  if (identity.publicKeyHex !== data.publicKey) {
    throw malformed(file, 'publicKey does not match secretKey');
  }
  return identity;
}

/** Big-endian hex of a prime, padded to its 128 bytes. */
function primeHex(x: bigint): string {
  return x.toString(16).padStart(PRIME_BYTES * 2, '0');
}

export function ticketKeyText(stored: StoredKey): string {
  const common = {
    format: 'powbridge-ticket-key',
    version: 1,
    keyId: stored.keyIdHex,
  } as const;
  const days = { notBeforeDay: stored.notBeforeDay, notAfterDay: stored.notAfterDay };
  const data: z.input<typeof ticketKeyFileSchema> =
    stored.scheme === 'rsa'
      ? {
          ...common,
          scheme: RSA_SCHEME,
          p: primeHex(stored.key.p),
          q: primeHex(stored.key.q),
          publicKey: bytesToHex(stored.key.spki),
          ...days,
        }
      : {
          ...common,
          scheme: AO_FILE_SCHEME,
          secretKey: bytesToHex(encodeScalar(stored.key.x)),
          publicKey: bytesToHex(encodePoint(stored.key.y)),
          ...days,
        };
  return `${JSON.stringify(data, null, 2)}\n`;
}

/** A key already in memory, by key id: what a reload may reuse. */
export type KnownKeys = ReadonlyMap<string, StoredKey['key']>;

function aoKey(
  file: string,
  data: Extract<TicketKeyFile, { scheme: typeof AO_FILE_SCHEME }>,
  known: KnownKeys,
): SignerKey {
  let key: SignerKey;
  try {
    const x = decodeScalar(hexToBytes(data.secretKey), 'secretKey');
    const cached = known.get(data.keyId);
    key = cached && 'x' in cached && cached.x === x ? cached : signerKey(x);
  } catch {
    throw malformed(file, 'secretKey: not a valid non-zero ristretto255 scalar');
  }
  if (bytesToHex(encodePoint(key.y)) !== data.publicKey) {
    throw malformed(file, 'publicKey does not match secretKey');
  }
  return key;
}

function rsaKey(
  file: string,
  data: Extract<TicketKeyFile, { scheme: typeof RSA_SCHEME }>,
  known: KnownKeys,
): RsaPrivateKey {
  const p = BigInt(`0x${data.p}`);
  const q = BigInt(`0x${data.q}`);
  const cached = known.get(data.keyId);
  let key: RsaPrivateKey;
  if (cached && 'p' in cached && cached.p === p && cached.q === q) key = cached;
  else {
    try {
      // Checks both are safe primes (milliseconds each), distinct, with a 2048-bit product.
      key = rsaPrivateKey(p, q);
    } catch (err) {
      // rsaPrivateKey's messages name the rule, never a value.
      const rule = err instanceof Error ? err.message.replace(/^rsa: /, '') : 'not a valid key';
      throw malformed(file, `p, q: ${rule}`);
    }
  }
  if (bytesToHex(key.spki) !== data.publicKey) {
    throw malformed(file, 'publicKey does not match p and q');
  }
  return key;
}

/**
 * `known`: keys already in memory. Building a key costs milliseconds (an Abe–Okamoto key's
 * window table, an RSA key's safe-prime checks), and a reload re-reads every file, so an
 * unchanged secret reuses the key built before.
 */
export function parseTicketKey(
  file: string,
  name: string,
  text: string,
  known: KnownKeys,
): StoredKey {
  const data = parseKeyFile(ticketKeyFileSchema, file, text);
  const days = { notBeforeDay: data.notBeforeDay, notAfterDay: data.notAfterDay };
  const key = data.scheme === RSA_SCHEME ? rsaKey(file, data, known) : aoKey(file, data, known);
  const keyIdHex = bytesToHex(key.keyId);
  if (keyIdHex !== data.keyId) throw malformed(file, 'keyId does not match publicKey');
  if (name !== ticketFileName(keyIdHex)) {
    throw malformed(
      file,
      `file name does not match its key id (expected ${ticketFileName(keyIdHex)})`,
    );
  }
  return 'p' in key
    ? { scheme: 'rsa', key, keyIdHex, ...days }
    : { scheme: 'ao', key, keyIdHex, ...days };
}
