import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Algorithm } from '../../src/work/algorithm.js';

const here = dirname(fileURLToPath(import.meta.url));

export interface HeaderVector {
  chain: string;
  height: number;
  algorithm: Algorithm;
  version: number;
  prevhash: string;
  merkleRoot: string;
  time: number;
  bits: string;
  nonce: number;
  header: string;
  hash: string;
  powHash: string;
}

/** Real Bitcoin and Litecoin block headers (test/vectors/headers.json). */
export function headerVectors(): HeaderVector[] {
  const file = join(here, '..', 'vectors', 'headers.json');
  return (JSON.parse(readFileSync(file, 'utf8')) as { headers: HeaderVector[] }).headers;
}

export const blockFixtures = JSON.parse(
  readFileSync(join(here, '..', 'fixtures', 'blocks.json'), 'utf8'),
) as {
  litecoinGenesisCoinbase: { tx: string; txid: string };
  bitcoinBlock100000: { txids: string[]; merkleRoot: string };
};
