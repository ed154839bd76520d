import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';

/**
 * The browser's src/work/hash.ts (the bundler swaps it in, scripts/build-browser.mjs): the
 * same two functions over @noble/hashes instead of node:crypto. The page hashes only a
 * coinbase and its merkle branches per task, so a JavaScript SHA-256 costs nothing there.
 */

export function sha256(data: Uint8Array): Uint8Array {
  return nobleSha256(data);
}

export function sha256d(data: Uint8Array): Uint8Array {
  return sha256(sha256(data));
}
