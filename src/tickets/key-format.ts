import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import { z } from 'zod';
import { decodeScalar, encodePoint, encodeScalar } from './group.js';
import { KeyFileError } from './key-files.js';
import type { KeyValidity } from './keyring.js';
import { type SignerKey, signerKey } from './scheme.js';

/**
 * The key files' format (0600 JSON, one key per file, in `<dataDir>/keys/`):
 * - `identity.json`: {format: "powbridge-identity", version: 1, algorithm: "ed25519",
 *   secretKey: 32-byte seed (RFC 8032), publicKey}, both lowercase hex;
 * - `ticket-<keyId>.json`: {format: "powbridge-ticket-key", version: 1, scheme:
 *   "abe-okamoto-ristretto255", keyId, secretKey: scalar x (32 bytes LE), publicKey: y = g^x,
 *   notBeforeDay, notAfterDay} (UTC days, inclusive).
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

/** A ticket key as held in memory: the signer key (with its window table) and its days. */
export interface StoredKey extends KeyValidity {
  key: SignerKey;
  keyIdHex: string;
}

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

const ticketKeyFileSchema = z
  .strictObject({
    format: z.literal('powbridge-ticket-key'),
    version: z.literal(1),
    scheme: z.literal('abe-okamoto-ristretto255'),
    keyId: hex(8),
    secretKey: hex(32),
    publicKey: hex(32),
    notBeforeDay: day,
    notAfterDay: day,
  })
  .refine((k) => k.notBeforeDay <= k.notAfterDay, {
    error: 'notBeforeDay must be <= notAfterDay',
    path: ['notAfterDay'],
  });

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

export function ticketKeyText(stored: StoredKey): string {
  const data: z.input<typeof ticketKeyFileSchema> = {
    format: 'powbridge-ticket-key',
    version: 1,
    scheme: 'abe-okamoto-ristretto255',
    keyId: stored.keyIdHex,
    secretKey: bytesToHex(encodeScalar(stored.key.x)),
    publicKey: bytesToHex(encodePoint(stored.key.y)),
    notBeforeDay: stored.notBeforeDay,
    notAfterDay: stored.notAfterDay,
  };
  return `${JSON.stringify(data, null, 2)}\n`;
}

/**
 * `known`: keys already in memory. A key's window table costs tens of milliseconds, and a
 * reload re-reads every file, so an unchanged secret reuses the key built before.
 */
export function parseTicketKey(
  file: string,
  name: string,
  text: string,
  known: ReadonlyMap<string, SignerKey>,
): StoredKey {
  const data = parseKeyFile(ticketKeyFileSchema, file, text);
  let key: SignerKey;
  try {
    const x = decodeScalar(hexToBytes(data.secretKey), 'secretKey');
    const cached = known.get(data.keyId);
    key = cached?.x === x ? cached : signerKey(x);
  } catch {
    throw malformed(file, 'secretKey: not a valid non-zero ristretto255 scalar');
  }
  if (bytesToHex(encodePoint(key.y)) !== data.publicKey) {
    throw malformed(file, 'publicKey does not match secretKey');
  }
  const keyIdHex = bytesToHex(key.keyId);
  if (keyIdHex !== data.keyId) throw malformed(file, 'keyId does not match publicKey');
  if (name !== ticketFileName(keyIdHex)) {
    throw malformed(
      file,
      `file name does not match its key id (expected ${ticketFileName(keyIdHex)})`,
    );
  }
  return { key, keyIdHex, notBeforeDay: data.notBeforeDay, notAfterDay: data.notAfterDay };
}
