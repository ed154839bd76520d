/**
 * The browser's `randomBytes` for src/tickets/group.ts, whose only Node import it is (the
 * bundler swaps it in for that module alone, scripts/build-browser.mjs): the page's CSPRNG,
 * crypto.getRandomValues, which fills at most 65,536 bytes a call.
 */

const MAX_FILL = 65_536;

export function randomBytes(length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let at = 0; at < length; at += MAX_FILL) {
    crypto.getRandomValues(out.subarray(at, Math.min(length, at + MAX_FILL)));
  }
  return out;
}
