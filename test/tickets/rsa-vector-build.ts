import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  bigIntToBytes,
  blind,
  bytesToBigInt,
  finalize,
  generateRsaKey,
  MODULUS_BYTES,
  rsaPrivateKey,
  RsaSigner,
  SALT_BYTES,
  ticketInfoV2,
} from '../../src/tickets/rsa-scheme.js';
import { encodeTicketV2, NONCE_BYTES, ticketMessageV2 } from '../../src/tickets/ticket-v2.js';
import { fixedRandom } from '../helpers/fixed-random.js';

export const VECTORS_FILE = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  'vectors',
  'tickets-v2.json',
);

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const bigHex = (x: bigint) => hex(bigIntToBytes(x, MODULUS_BYTES));

/**
 * Runs `run` with the platform CSPRNG (globalThis.crypto.getRandomValues, which the reference
 * library draws its salt and blind from) replaced by the given draws, in order; each draw must
 * match the requested length exactly, and every draw must be used.
 */
export async function withFixedRandom<T>(draws: Uint8Array[], run: () => Promise<T>): Promise<T> {
  const queue = [...draws];
  const fake = (array: ArrayBufferView): ArrayBufferView => {
    const next = queue.shift();
    if (next === undefined || next.length !== array.byteLength) {
      throw new Error(`fixed random: unexpected draw of ${array.byteLength} bytes`);
    }
    new Uint8Array(array.buffer, array.byteOffset, array.byteLength).set(next);
    return array;
  };
  Object.defineProperty(globalThis.crypto, 'getRandomValues', {
    value: fake,
    configurable: true,
    writable: true,
  });
  try {
    const out = await run();
    if (queue.length > 0) throw new Error(`fixed random: ${queue.length} draws left unused`);
    return out;
  } finally {
    // Removes the own property: the prototype's real getRandomValues shows through again.
    Reflect.deleteProperty(globalThis.crypto, 'getRandomValues');
  }
}

export interface StoredKey {
  p: string;
  q: string;
}

/**
 * Our vectors: one issuance of a v2 ticket under a stored key (hex primes), every random draw
 * from one seed (SHA-256(seed/counter) stream) in this order: nonce (32), salt (48), then 256-byte
 * draws until one is in [1, n) — the blind r, drawn the way the library draws it.
 */
export async function buildRsaTicketVectors(stored: StoredKey, seed: string, day: number) {
  const key = rsaPrivateKey(BigInt(`0x${stored.p}`), BigInt(`0x${stored.q}`));
  const random = fixedRandom(seed);
  const nonce = random(NONCE_BYTES);
  const salt = random(SALT_BYTES);
  let r = random(MODULUS_BYTES);
  while (bytesToBigInt(r) === 0n || bytesToBigInt(r) >= key.n) r = random(MODULUS_BYTES);
  const info = ticketInfoV2(day);
  const msg = ticketMessageV2(key.keyId, day, nonce);
  const { blindedMsg, inv } = await withFixedRandom([salt, r], () => blind(key.spki, info, msg));
  const signer = new RsaSigner(key);
  const derived = signer.derived(day);
  const blindSig = signer.sign(day, blindedMsg);
  const signature = await finalize(key.spki, info, msg, blindSig, inv);
  return {
    about:
      'powbridge ticket v2 vectors (docs/design.md §6.5): RSAPBSSA-SHA384-PSS-Deterministic, info = "powbridge/ticket/v2" ‖ day (uint32 BE). Integers are big-endian hex, 256 bytes unless noted. Randomness: SHA-256(seed/counter) stream; draw order nonce (32), salt (48), r (256, redrawn until 0 < r < n).',
    seed,
    day,
    key: {
      p: stored.p,
      q: stored.q,
      n: bigHex(key.n),
      e: key.e.toString(16),
      spki: hex(key.spki),
      keyId: hex(key.keyId),
    },
    info: hex(info),
    eprime: hex(bigIntToBytes(derived.ePrime, MODULUS_BYTES / 2)),
    dprime: bigHex(derived.dPrime),
    nonce: hex(nonce),
    msg: hex(msg),
    salt: hex(salt),
    r: hex(r),
    inv: hex(inv),
    blinded_msg: hex(blindedMsg),
    blinded_sig: hex(blindSig),
    sig: hex(signature),
    ticket: encodeTicketV2({ keyId: key.keyId, day, nonce, signature }),
  };
}

export type RsaTicketVectors = Awaited<ReturnType<typeof buildRsaTicketVectors>>;

export interface DraftVector {
  msg: string;
  info: string;
  eprime: string;
  r: string;
  salt: string;
  blinded_msg: string;
  blinded_sig: string;
  sig: string;
}

export interface VectorsFile {
  about: string;
  draft: {
    source: string;
    key: { p: string; q: string; d: string; e: string; n: string };
    vectors: DraftVector[];
  };
  powbridge: RsaTicketVectors;
}

export function readVectorsFile(): VectorsFile {
  return JSON.parse(readFileSync(VECTORS_FILE, 'utf8')) as VectorsFile;
}

/**
 * `npx tsx test/tickets/rsa-vector-build.ts [--new-key] [--draft <json>]` rewrites
 * test/vectors/tickets-v2.json: the draft's vectors are kept (or read from --draft), the stored
 * key is kept unless --new-key (safe primes take seconds, so tests never generate one).
 */
async function main(args: string[]): Promise<void> {
  const existing = existsSync(VECTORS_FILE) ? readVectorsFile() : undefined;
  const draftAt = args.indexOf('--draft');
  const draftPath = draftAt >= 0 ? args[draftAt + 1] : undefined;
  const draft =
    draftPath !== undefined
      ? (JSON.parse(readFileSync(draftPath, 'utf8')) as VectorsFile['draft'])
      : existing?.draft;
  if (draft === undefined) throw new Error('no draft vectors: pass --draft <json>');
  let stored: StoredKey | undefined = existing?.powbridge.key;
  if (stored === undefined || args.includes('--new-key')) {
    const key = generateRsaKey();
    stored = { p: key.p.toString(16), q: key.q.toString(16) };
  }
  const out: VectorsFile = {
    about:
      'Tickets v2 test vectors: the draft test vectors of RSAPBSSA-SHA384-PSS-Deterministic, and powbridge issuance vectors with fixed randomness (test/tickets/rsa-vector-build.ts).',
    draft,
    powbridge: await buildRsaTicketVectors(stored, 'powbridge ticket vectors v2', 20_413),
  };
  writeFileSync(VECTORS_FILE, `${JSON.stringify(out, null, 2)}\n`);
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  await main(process.argv.slice(2));
}
