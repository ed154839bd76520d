import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ensurePrivateDir, readPrivateFile, writePrivateFile } from '../tickets/key-files.js';
import { OnionAddressError, parseKeyBlob } from './onion-address.js';

/**
 * The onion service's private key, kept in the relay's data directory so the relay has the
 * same onion address after a restart: `<dataDir>/tor/onion_key` (directory 0700, file 0600,
 * written atomically), holding the ED25519-V3 blob exactly as ADD_ONION returned it. Errors
 * name the file, never its contents.
 */

export const ONION_KEY_DIR = 'tor';
export const ONION_KEY_FILE = 'onion_key';

export function onionKeyPath(dataDir: string): string {
  return join(dataDir, ONION_KEY_DIR, ONION_KEY_FILE);
}

/** The stored key blob, or null when there is none yet. */
export async function loadOnionKey(dataDir: string): Promise<string | null> {
  const file = onionKeyPath(dataDir);
  try {
    await stat(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const blob = (await readPrivateFile(file)).trim();
  try {
    parseKeyBlob(blob);
  } catch (err) {
    if (err instanceof OnionAddressError) {
      throw new OnionAddressError(
        `${file}: not an onion key (damaged?); move it away to get a new onion address`,
      );
    }
    throw err;
  }
  return blob;
}

export async function saveOnionKey(dataDir: string, blob: string): Promise<void> {
  parseKeyBlob(blob);
  const dir = join(dataDir, ONION_KEY_DIR);
  await ensurePrivateDir(dir);
  await writePrivateFile(dir, ONION_KEY_FILE, `${blob}\n`);
}
