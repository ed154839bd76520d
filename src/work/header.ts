import { assembleCoinbase } from './coinbase.js';
import { sha256d } from './hash.js';
import { parseHex, parseU32Hex, toHex } from './hex.js';
import type { Job, ShareSubmission } from './job.js';
import { merkleRootFromBranches } from './merkle.js';
import { rollVersion, versionBitsWithinMask } from './version.js';

/** The six header fields as numbers and internal-order (little-endian) hashes. */
export interface HeaderFields {
  version: number;
  prevhash: Uint8Array;
  merkleRoot: Uint8Array;
  ntime: number;
  nbits: number;
  nonce: number;
}

export class HeaderError extends Error {
  override name = 'HeaderError';
}

/** Swap the bytes within each 4-byte word. Stratum's prevhash transform is its own inverse. */
function swapWords(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i += 4) {
    out[i] = bytes[i + 3] as number;
    out[i + 1] = bytes[i + 2] as number;
    out[i + 2] = bytes[i + 1] as number;
    out[i + 3] = bytes[i] as number;
  }
  return out;
}

/** Stratum prevhash (word-swapped) to internal byte order. */
export function prevhashFromStratum(hex: unknown): Uint8Array {
  return swapWords(parseHex(hex, 'prevhash', 32));
}

/** Internal-order previous block hash to Stratum's word-swapped hex. */
export function prevhashToStratum(prevhash: Uint8Array): string {
  if (prevhash.length !== 32) throw new HeaderError('prevhash must be 32 bytes');
  return toHex(swapWords(prevhash));
}

/** version ‖ prevhash ‖ merkle root ‖ ntime ‖ nbits ‖ nonce, uint32s little-endian. */
export function serializeHeader(fields: HeaderFields): Uint8Array {
  if (fields.prevhash.length !== 32) throw new HeaderError('prevhash must be 32 bytes');
  if (fields.merkleRoot.length !== 32) throw new HeaderError('merkle root must be 32 bytes');
  const header = Buffer.alloc(80);
  header.writeUInt32LE(fields.version >>> 0, 0);
  header.set(fields.prevhash, 4);
  header.set(fields.merkleRoot, 36);
  header.writeUInt32LE(fields.ntime >>> 0, 68);
  header.writeUInt32LE(fields.nbits >>> 0, 72);
  header.writeUInt32LE(fields.nonce >>> 0, 76);
  return new Uint8Array(header);
}

export function parseHeader(header: Uint8Array): HeaderFields {
  if (header.length !== 80) throw new HeaderError(`header must be 80 bytes, got ${header.length}`);
  const view = Buffer.from(header.buffer, header.byteOffset, 80);
  return {
    version: view.readUInt32LE(0),
    prevhash: header.slice(4, 36),
    merkleRoot: header.slice(36, 68),
    ntime: view.readUInt32LE(68),
    nbits: view.readUInt32LE(72),
    nonce: view.readUInt32LE(76),
  };
}

export interface BuiltHeader {
  header: Uint8Array;
  coinbase: Uint8Array;
  /** The rolled version that went into the header. */
  version: number;
}

/**
 * The header a share claims: coinbase from the job and extranonces, merkle root from the
 * branches, the share's ntime and nonce, and version bits rolled under `versionMask`.
 * Throws HeaderError (or HexError) on malformed fields or version bits outside the mask.
 */
export function headerFromJob(
  job: Job,
  extranonce1: string,
  share: ShareSubmission,
  versionMask: number | null,
): BuiltHeader {
  const coinbase = assembleCoinbase(
    parseHex(job.coinb1, 'coinb1'),
    parseHex(extranonce1, 'extranonce1'),
    parseHex(share.extranonce2, 'extranonce2'),
    parseHex(job.coinb2, 'coinb2'),
  );
  const branches = job.merkleBranch.map((b, i) => parseHex(b, `merkleBranch[${i}]`, 32));
  let version = parseU32Hex(job.version, 'version');
  if (share.versionBits !== undefined) {
    const bits = parseU32Hex(share.versionBits, 'versionBits');
    const mask = versionMask ?? 0;
    if (!versionBitsWithinMask(bits, mask)) {
      throw new HeaderError('versionBits: bits outside the negotiated version mask');
    }
    version = rollVersion(version, bits, mask);
  }
  const header = serializeHeader({
    version,
    prevhash: prevhashFromStratum(job.prevhash),
    merkleRoot: merkleRootFromBranches(sha256d(coinbase), branches),
    ntime: parseU32Hex(share.ntime, 'ntime'),
    nbits: parseU32Hex(job.nbits, 'nbits'),
    nonce: parseU32Hex(share.nonce, 'nonce'),
  });
  return { header, coinbase, version };
}
