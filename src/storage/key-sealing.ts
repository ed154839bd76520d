import {
  createCipheriv,
  createDecipheriv,
  hkdfSync,
  randomBytes,
  timingSafeEqual,
} from 'node:crypto';
import { inspect } from 'node:util';

/**
 * The family key (`[storage] familyKeyFile`, docs/design.md §6.4) and what it seals: a relay
 * family keeps its key files in PostgreSQL (postgres-key-vault.ts) only as AES-256-GCM
 * ciphertext under a key that each instance holds in a file and the database never sees.
 *
 * - Two keys are derived from the 32-byte secret with HKDF-SHA256: one seals, one gives a
 *   16-byte check value stored beside the keys, so a wrong family key is told apart from a
 *   damaged row without exposing either key.
 * - Every seal takes a fresh random 96-bit nonce; a key is re-sealed (new nonce) when it changes.
 * - The associated data is the row's kind and key id: a ciphertext moved to another row fails
 *   to open instead of becoming another key.
 */

export const FAMILY_KEY_BYTES = 32;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
export const KEY_CHECK_BYTES = 16;

/** What a sealed key is bound to: its row in the vault. */
export interface SealLabel {
  kind: 'identity' | 'ticket';
  /** The ticket key id, or the identity's public key (lowercase hex). */
  keyId: string;
}

export interface SealedKey {
  nonce: Buffer;
  /** Ciphertext followed by the 16-byte GCM tag. */
  box: Buffer;
}

/** A sealed key that does not open under this family key with this label. */
export class KeySealError extends Error {
  override name = 'KeySealError';
}

/** A family key file that is not one (messages name the file and the rule, never its text). */
export class FamilyKeyFileError extends Error {
  override name = 'FamilyKeyFileError';
}

const SALT = Buffer.from('powbridge family key', 'utf8');

function derive(secret: Uint8Array, info: string, bytes: number): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, SALT, Buffer.from(info, 'utf8'), bytes));
}

function associatedData(label: SealLabel): Buffer {
  return Buffer.from(`powbridge key vault v1\0${label.kind}\0${label.keyId}`, 'utf8');
}

export class FamilyKey {
  private readonly sealKey: Buffer;
  /** Stored in the vault: equal for the same family key, and says nothing about it. */
  readonly check: Buffer;

  constructor(
    secret: Uint8Array,
    private readonly random: (bytes: number) => Uint8Array = randomBytes,
  ) {
    if (secret.length !== FAMILY_KEY_BYTES) {
      throw new FamilyKeyFileError(`a family key is ${FAMILY_KEY_BYTES} bytes`);
    }
    this.sealKey = derive(secret, 'powbridge key vault: seal v1', 32);
    this.check = derive(secret, 'powbridge key vault: check v1', KEY_CHECK_BYTES);
  }

  /** Does a check value from the vault belong to this family key? */
  matches(check: Uint8Array): boolean {
    return check.length === KEY_CHECK_BYTES && timingSafeEqual(check, this.check);
  }

  seal(text: string, label: SealLabel): SealedKey {
    const nonce = Buffer.from(this.random(NONCE_BYTES));
    if (nonce.length !== NONCE_BYTES)
      throw new KeySealError('random source returned too few bytes');
    const cipher = createCipheriv('aes-256-gcm', this.sealKey, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(associatedData(label));
    const box = Buffer.concat([cipher.update(text, 'utf8'), cipher.final(), cipher.getAuthTag()]);
    return { nonce, box };
  }

  /** The text sealed under this key and label; KeySealError for anything else. */
  open(sealed: SealedKey, label: SealLabel): string {
    const { nonce, box } = sealed;
    if (nonce.length !== NONCE_BYTES || box.length < TAG_BYTES) {
      throw new KeySealError(`${label.kind} key ${label.keyId}: sealed value has the wrong size`);
    }
    const decipher = createDecipheriv('aes-256-gcm', this.sealKey, nonce, {
      authTagLength: TAG_BYTES,
    });
    decipher.setAAD(associatedData(label));
    decipher.setAuthTag(box.subarray(box.length - TAG_BYTES));
    try {
      const plain = Buffer.concat([
        decipher.update(box.subarray(0, box.length - TAG_BYTES)),
        decipher.final(),
      ]);
      return plain.toString('utf8');
    } catch {
      throw new KeySealError(`${label.kind} key ${label.keyId} does not open under the family key`);
    }
  }

  /** Never the key itself, whatever logs the object. */
  toJSON(): string {
    return '[family key]';
  }

  [inspect.custom](): string {
    return 'FamilyKey [family key]';
  }
}

/** A new family key file's text: the secret in base64url on one line. */
export function newFamilyKeyText(random: (bytes: number) => Uint8Array = randomBytes): string {
  const secret = Buffer.from(random(FAMILY_KEY_BYTES));
  if (secret.length !== FAMILY_KEY_BYTES)
    throw new KeySealError('random source returned too few bytes');
  return `${secret.toString('base64url')}\n`;
}

/** 32 bytes in unpadded base64url are 43 characters. */
const FAMILY_KEY_TEXT = /^[A-Za-z0-9_-]{43}$/;

/** The secret of a family key file's text (one line, an optional final newline). */
export function parseFamilyKeyText(file: string, text: string): Uint8Array {
  const line = text.replace(/\r?\n$/, '');
  const secret = FAMILY_KEY_TEXT.test(line) ? Buffer.from(line, 'base64url') : null;
  // The round trip refuses non-canonical final characters, so one key has one spelling.
  if (secret?.length !== FAMILY_KEY_BYTES || secret.toString('base64url') !== line) {
    throw new FamilyKeyFileError(
      `${file}: not a family key (expected ${FAMILY_KEY_BYTES} bytes in base64url on one ` +
        'line; make one with: powbridge keys family-key --out <file>)',
    );
  }
  return secret;
}
