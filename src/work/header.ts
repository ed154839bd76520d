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

/** A job's fields parsed once, so each share only adds its own bytes. */
export interface PreparedJob {
  coinb1: Uint8Array;
  coinb2: Uint8Array;
  branches: Uint8Array[];
  version: number;
  prevhash: Uint8Array;
  nbits: number;
}

/** Parse and validate a job's fields (HeaderError/HexError name the bad field). */
export function prepareJob(job: Job): PreparedJob {
  return {
    coinb1: parseHex(job.coinb1, 'coinb1'),
    coinb2: parseHex(job.coinb2, 'coinb2'),
    branches: job.merkleBranch.map((b, i) => parseHex(b, `merkleBranch[${i}]`, 32)),
    version: parseU32Hex(job.version, 'version'),
    prevhash: prevhashFromStratum(job.prevhash),
    nbits: parseU32Hex(job.nbits, 'nbits'),
  };
}

/** Coinbase and merkle root for one (extranonce1, extranonce2): the costly part of a share. */
export function coinbaseAndRoot(
  job: PreparedJob,
  extranonce1: Uint8Array,
  extranonce2: Uint8Array,
): { coinbase: Uint8Array; merkleRoot: Uint8Array } {
  const coinbase = assembleCoinbase(job.coinb1, extranonce1, extranonce2, job.coinb2);
  return { coinbase, merkleRoot: merkleRootFromBranches(sha256d(coinbase), job.branches) };
}

/** The version a share mines: job version with its bits rolled under the mask. */
export function shareVersion(
  job: PreparedJob,
  versionBits: string | undefined,
  versionMask: number | null,
): number {
  if (versionBits === undefined) return job.version;
  const bits = parseU32Hex(versionBits, 'versionBits');
  const mask = versionMask ?? 0;
  if (!versionBitsWithinMask(bits, mask)) {
    throw new HeaderError('versionBits: bits outside the negotiated version mask');
  }
  return rollVersion(job.version, bits, mask);
}

/** The 80-byte header of a share, given its merkle root. */
export function shareHeader(
  job: PreparedJob,
  merkleRoot: Uint8Array,
  share: Pick<ShareSubmission, 'ntime' | 'nonce'>,
  version: number,
): Uint8Array {
  return serializeHeader({
    version,
    prevhash: job.prevhash,
    merkleRoot,
    ntime: parseU32Hex(share.ntime, 'ntime'),
    nbits: job.nbits,
    nonce: parseU32Hex(share.nonce, 'nonce'),
  });
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
  const prepared = prepareJob(job);
  const { coinbase, merkleRoot } = coinbaseAndRoot(
    prepared,
    parseHex(extranonce1, 'extranonce1'),
    parseHex(share.extranonce2, 'extranonce2'),
  );
  const version = shareVersion(prepared, share.versionBits, versionMask);
  return { header: shareHeader(prepared, merkleRoot, share, version), coinbase, version };
}
