import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToHex, hexToBytes, utf8ToBytes } from '@noble/hashes/utils.js';
import { z } from 'zod';
import {
  AO_SCHEME,
  RSA_SCHEME,
  RSA_SPKI_MAX_BYTES,
  TICKET_SCHEMES,
  type TicketSchemeName,
} from '../protocol/messages.js';
import { ALGORITHMS } from '../work/algorithm.js';
import { decodePoint } from './group.js';
import type { TicketScheme } from './keyring.js';
import { rsaKeyId, rsaPublicKey } from './rsa-scheme.js';
import { keyIdOf } from './scheme.js';

/**
 * The signed descriptor (docs/design.md §6.4), served at /v1/descriptor: the relay's terms (its
 * unsigned fields: algorithm, endpoints, difficulty) plus its identity, its ticket keys with
 * their validity, price, window, expiry rule and backup relays, signed by the identity key.
 *
 * Wire format: one JSON object; `signature` is an Ed25519 signature (RFC 8032, 64 bytes,
 * lowercase hex) by `identity` over
 *
 *     UTF-8("powbridge/descriptor/v1\n") ‖ UTF-8(canonical JSON of the object without `signature`)
 *
 * Canonical JSON is RFC 8785 (JCS) restricted to what we emit: object keys sorted by UTF-16
 * code units, no whitespace, strings and numbers as ECMAScript JSON.stringify writes them,
 * numbers finite. Any implementation can verify by re-serialising the received object this
 * way, so whitespace or key order on the wire does not matter. The prefix keeps a descriptor
 * signature from ever being valid for another message signed by the same identity.
 *
 * Binary values are lowercase hex, as in the circuit protocol (docs/design.md §5). Days are UTC days
 * since 1970-01-01; a key issues tickets on days notBeforeDay..notAfterDay (inclusive), and a
 * ticket is redeemable on its issue day and the next.
 *
 * Each key entry names its scheme (docs/design.md §6.4, §6.5): "ao-ristretto255" (publicKey: the
 * 32-byte ristretto255 point) or "rsapbssa-sha384-pss-deterministic" (publicKey: the SPKI DER of
 * the RSA master key). An entry without `scheme`, from a relay older than tickets v2, is
 * Abe–Okamoto. At most one key of each scheme issues on any day.
 */

export const DESCRIPTOR_VERSION = 1;
export const DESCRIPTOR_CONTEXT = 'powbridge/descriptor/v1\n';
export const TICKET_EXPIRY_RULE =
  'a ticket is redeemable on its issue day and the next UTC day, once; days are UTC days since 1970-01-01';
/** Fields this module adds; the relay's base fields must not use these names. */
const SIGNED_FIELDS = ['identity', 'issuedAt', 'tickets', 'backupRelays', 'signature'] as const;
const MAX_DESCRIPTOR_CHARS = 64 * 1024;
const MAX_DEPTH = 16;

export class DescriptorError extends Error {
  override name = 'DescriptorError';
}

const hex = (bytes: number) =>
  z.string().regex(new RegExp(`^[0-9a-f]{${bytes * 2}}$`), `expected ${bytes} bytes of hex`);
const day = z.number().int().min(0).max(0xffffffff);

/** A ticket scheme's wire name (register terms, descriptor, `keys show --json`). */
export const SCHEME_NAMES: Readonly<Record<TicketScheme, TicketSchemeName>> = {
  ao: AO_SCHEME,
  rsa: RSA_SCHEME,
};

export function schemeOfName(name: TicketSchemeName): TicketScheme {
  return name === RSA_SCHEME ? 'rsa' : 'ao';
}

const AO_PUBLIC_KEY_BYTES = 32;

/** Without the range checks, for schemas that extend it (zod cannot extend a refined one). */
export const descriptorKeyObject = z.looseObject({
  keyId: hex(8),
  // Absent in descriptors from before tickets v2, whose keys are all Abe–Okamoto.
  scheme: z
    .enum(TICKET_SCHEMES, { error: `expected "${AO_SCHEME}" or "${RSA_SCHEME}"` })
    .default(AO_SCHEME),
  publicKey: z
    .string()
    .regex(
      new RegExp(`^(?:[0-9a-f]{2}){${AO_PUBLIC_KEY_BYTES},${RSA_SPKI_MAX_BYTES}}$`),
      `expected ${AO_PUBLIC_KEY_BYTES} to ${RSA_SPKI_MAX_BYTES} bytes of hex`,
    ),
  notBeforeDay: day,
  notAfterDay: day,
});

/** The rules a key entry's fields obey together (applied to descriptor and pin entries). */
export function keyEntryRules(
  k: { scheme: TicketSchemeName; publicKey: string; notBeforeDay: number; notAfterDay: number },
  ctx: z.RefinementCtx,
): void {
  if (k.notBeforeDay > k.notAfterDay) {
    ctx.addIssue({
      code: 'custom',
      message: 'notBeforeDay must be <= notAfterDay',
      path: ['notAfterDay'],
    });
  }
  if (k.scheme === AO_SCHEME && k.publicKey.length !== AO_PUBLIC_KEY_BYTES * 2) {
    ctx.addIssue({
      code: 'custom',
      message: `expected ${AO_PUBLIC_KEY_BYTES} bytes of hex for ${AO_SCHEME}`,
      path: ['publicKey'],
    });
  }
}

export const descriptorKeySchema = descriptorKeyObject.superRefine(keyEntryRules);
export type DescriptorKey = z.output<typeof descriptorKeySchema>;
/** The fields of a key entry this version defines (what the relay lists). */
export type ListedKey = Pick<
  DescriptorKey,
  'keyId' | 'scheme' | 'publicKey' | 'notBeforeDay' | 'notAfterDay'
>;

/** A backup relay (Protocol 2, docs/design.md §7); the list is empty until peers exist. */
export const backupRelaySchema = z.looseObject({
  identity: hex(32),
  url: z.string().min(1).max(512),
});
export type BackupRelay = z.output<typeof backupRelaySchema>;

/**
 * Top level and sections are loose: fields a later relay adds are signed like the rest and
 * ignored here; `version` changes when a change is not additive.
 */
export const signedDescriptorSchema = z.looseObject({
  version: z.literal(DESCRIPTOR_VERSION),
  algorithm: z.enum(ALGORITHMS),
  endpoints: z.looseObject({ circuit: z.string().min(1) }),
  identity: hex(32),
  issuedAt: z.number().int().min(0),
  tickets: z.looseObject({
    /** Credit one ticket costs (share difficulty / ticket difficulty, docs/design.md §4.4). */
    price: z.number().positive(),
    windowSeconds: z.number().int().positive(),
    expiry: z.string().max(512),
    keys: z.array(descriptorKeySchema).max(64),
  }),
  backupRelays: z.array(backupRelaySchema).max(64),
  signature: hex(64),
});
export type SignedDescriptor = z.output<typeof signedDescriptorSchema>;

/** What signs: the relay identity (key-store's RelayIdentity fits). */
export interface DescriptorSigner {
  readonly publicKeyHex: string;
  sign(message: Uint8Array): Uint8Array;
}

/** RFC 8785 canonical JSON of plain data; anything JSON cannot carry exactly is refused. */
export function canonicalJson(value: unknown, depth = 0): string {
  if (depth > MAX_DEPTH) throw new DescriptorError('canonical JSON: nested too deeply');
  if (value === null || typeof value === 'boolean' || typeof value === 'string') {
    return JSON.stringify(value);
  }
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new DescriptorError('canonical JSON: non-finite number');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) {
    return `[${value.map((v: unknown) => canonicalJson(v, depth + 1)).join(',')}]`;
  }
  if (typeof value === 'object') {
    const proto: unknown = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) {
      throw new DescriptorError('canonical JSON: only plain objects');
    }
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v, depth + 1)}`).join(',')}}`;
  }
  // undefined, functions, bigint, symbols: JSON.stringify would drop or throw; refuse instead,
  // so what is signed is always exactly what is sent.
  throw new DescriptorError(`canonical JSON: unsupported ${typeof value}`);
}

/** The bytes the signature covers: context ‖ canonical JSON without `signature`. */
export function descriptorSigningBytes(descriptor: object): Uint8Array {
  const { signature: _signature, ...unsigned } = descriptor as Record<string, unknown>;
  return utf8ToBytes(DESCRIPTOR_CONTEXT + canonicalJson(unsigned));
}

export interface DescriptorInput {
  /** The relay's unsigned fields (relayDescriptor(...)): version, algorithm, endpoints, … */
  base: object;
  identity: DescriptorSigner;
  keys: readonly ListedKey[];
  price: number;
  windowSeconds: number;
  expiry?: string;
  /** Extra endpoints merged over base.endpoints. */
  endpoints?: Record<string, string>;
  backupRelays?: readonly BackupRelay[];
  /** Unix seconds. */
  issuedAt: number;
}

/**
 * Build and sign. The result is checked exactly as a client checks it, so the relay never
 * serves a descriptor its clients would refuse (e.g. two keys listed for one day).
 */
export function buildDescriptor(input: DescriptorInput): SignedDescriptor {
  const base = input.base as Record<string, unknown>;
  for (const field of SIGNED_FIELDS) {
    if (field in base) throw new DescriptorError(`base descriptor must not set "${field}"`);
  }
  const baseEndpoints = (base.endpoints ?? {}) as Record<string, unknown>;
  const unsigned = {
    ...base,
    version: DESCRIPTOR_VERSION,
    endpoints: { ...baseEndpoints, ...input.endpoints },
    identity: input.identity.publicKeyHex,
    issuedAt: input.issuedAt,
    tickets: {
      price: input.price,
      windowSeconds: input.windowSeconds,
      expiry: input.expiry ?? TICKET_EXPIRY_RULE,
      keys: input.keys.map((k) => ({
        keyId: k.keyId,
        scheme: k.scheme,
        publicKey: k.publicKey,
        notBeforeDay: k.notBeforeDay,
        notAfterDay: k.notAfterDay,
      })),
    },
    backupRelays: [...(input.backupRelays ?? [])],
  };
  const signature = bytesToHex(input.identity.sign(descriptorSigningBytes(unsigned)));
  const signed = { ...unsigned, signature };
  verifyDescriptor(signed, input.identity.publicKeyHex);
  return signed as SignedDescriptor;
}

function parseJson(json: unknown): unknown {
  if (typeof json !== 'string') return json;
  if (json.length > MAX_DESCRIPTOR_CHARS) throw new DescriptorError('descriptor: too large');
  try {
    return JSON.parse(json);
  } catch {
    throw new DescriptorError('descriptor: not valid JSON');
  }
}

function identityHex(key: Uint8Array | string): string {
  const text = typeof key === 'string' ? key.toLowerCase() : bytesToHex(key);
  if (!/^[0-9a-f]{64}$/.test(text)) {
    throw new DescriptorError('pinned identity: expected a 32-byte Ed25519 public key');
  }
  return text;
}

/** The key id a listed public key must have: the hash of its encoding, by scheme. */
function keyIdOfListed(k: ListedKey): string {
  const bytes = hexToBytes(k.publicKey);
  if (k.scheme === RSA_SCHEME) {
    try {
      return bytesToHex(rsaKeyId(rsaPublicKey(bytes).spki));
    } catch {
      throw new DescriptorError(
        `descriptor: key ${k.keyId}: not a 2048-bit RSA public key (SPKI DER, e = 65537)`,
      );
    }
  }
  try {
    return bytesToHex(keyIdOf(decodePoint(bytes, 'publicKey')));
  } catch {
    throw new DescriptorError(`descriptor: key ${k.keyId}: not a valid ristretto255 point`);
  }
}

/** Two keys of one scheme valid on a common day, if any. */
export function overlappingKeys<K extends Omit<ListedKey, 'publicKey'>>(
  keys: readonly K[],
): [K, K] | null {
  for (const scheme of TICKET_SCHEMES) {
    const sorted = keys
      .filter((k) => k.scheme === scheme)
      .sort((a, b) => a.notBeforeDay - b.notBeforeDay);
    for (let i = 1; i < sorted.length; i++) {
      const [prev, next] = [sorted[i - 1] as K, sorted[i] as K];
      if (next.notBeforeDay <= prev.notAfterDay) return [prev, next];
    }
  }
  return null;
}

/**
 * Each key id must be the hash of its key, and no two keys of one scheme may issue on the
 * same day (two would split that day's users into groups the relay could tell apart).
 */
function checkKeys(keys: readonly ListedKey[]): void {
  const seen = new Set<string>();
  for (const k of keys) {
    if (seen.has(k.keyId)) throw new DescriptorError(`descriptor: key ${k.keyId} is listed twice`);
    seen.add(k.keyId);
    if (keyIdOfListed(k) !== k.keyId) {
      throw new DescriptorError(`descriptor: key ${k.keyId}: key id does not match its public key`);
    }
  }
  const clash = overlappingKeys(keys);
  if (clash) {
    const [prev, next] = clash;
    throw new DescriptorError(
      `descriptor: keys ${prev.keyId} and ${next.keyId} are both valid on day ` +
        `${next.notBeforeDay}; a relay must have one issuing key per scheme per day`,
    );
  }
}

/**
 * Client side: check a descriptor (a JSON string or the parsed object) against the relay
 * identity the client pinned, then its structure and keys. Returns the typed descriptor.
 */
export function verifyDescriptor(
  json: unknown,
  pinnedIdentity: Uint8Array | string,
): SignedDescriptor {
  const pinned = identityHex(pinnedIdentity);
  const raw = parseJson(json);
  const parsed = signedDescriptorSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new DescriptorError(
      `descriptor: ${issue?.path.join('.') || 'top level'}: ${issue?.message ?? 'invalid'}`,
    );
  }
  const descriptor = parsed.data;
  if (descriptor.identity !== pinned) {
    throw new DescriptorError(
      `descriptor: signed by identity ${descriptor.identity}, not the pinned ${pinned}`,
    );
  }
  let valid: boolean;
  try {
    valid = ed25519.verify(
      hexToBytes(descriptor.signature),
      descriptorSigningBytes(raw as object),
      hexToBytes(pinned),
      { zip215: false },
    );
  } catch (err) {
    if (err instanceof DescriptorError) throw err;
    valid = false;
  }
  if (!valid) throw new DescriptorError('descriptor: bad signature');
  checkKeys(descriptor.tickets.keys);
  return descriptor;
}
