// Worker-thread entry: the PoW hash of one header, for share verification off the event loop.
import { isAlgorithm } from '../src/work/algorithm.js';
import { createPowHasher, type PowHasher } from '../src/work/pow.js';

const algorithm = process.env.POWBRIDGE_VERIFY_ALGORITHM;
if (!isAlgorithm(algorithm)) throw new Error(`verify worker: bad algorithm ${String(algorithm)}`);
const hasher: Promise<PowHasher> = createPowHasher(algorithm);

export default async function verify(header: Uint8Array): Promise<Uint8Array> {
  return (await hasher)(header);
}
