/**
 * A unit of work in the Stratum V1 shape (mining.notify), which is also what the circuit
 * protocol hands to clients. Fields stay as validated lowercase hex so a job can be passed on
 * without re-encoding; the block math in this folder turns them into bytes.
 */
export interface Job {
  jobId: string;
  /** Previous block hash in Stratum's form: internal (LE) order with each 4-byte word swapped. */
  prevhash: string;
  coinb1: string;
  coinb2: string;
  /** Merkle branches, internal byte order, used as given (no reversal). */
  merkleBranch: string[];
  /** Big-endian hex8. */
  version: string;
  nbits: string;
  ntime: string;
  /** True when earlier jobs must be dropped (new block). */
  clean: boolean;
}

/** What a miner submits against a job (Stratum mining.submit minus worker name). */
export interface ShareSubmission {
  jobId: string;
  extranonce2: string;
  /** Big-endian hex8. */
  ntime: string;
  nonce: string;
  /** BIP310 version bits (hex8), only the bits inside the negotiated mask. */
  versionBits?: string;
}
