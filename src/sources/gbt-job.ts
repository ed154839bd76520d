import { prevhashToStratum } from '../work/header.js';
import { parseHex, reversed, toHex, u32ToHex } from '../work/hex.js';
import type { Job } from '../work/job.js';
import { merkleBranchesForCoinbase } from '../work/merkle.js';
import { nbitsToTarget } from '../work/target.js';
import { buildCoinbase } from './gbt-coinbase.js';
import { type BlockTemplate, UnsupportedTemplateError } from './gbt-template.js';

/** What a job was made from, kept so a share for it can be turned back into a block. */
export interface TemplateJob {
  job: Job;
  template: BlockTemplate;
  /** Network target (from the template's bits). */
  target: bigint;
  /** The block needs the coinbase in witness serialization (the template commits to witnesses). */
  witness: boolean;
  /** The MWEB extension block that follows the transactions (null before MWEB is active). */
  mwebBlock: Uint8Array | null;
}

export interface TemplateJobOptions {
  jobId: string;
  clean: boolean;
  payoutScript: Uint8Array;
  tag: Uint8Array;
  /** extranonce1 + extranonce2 bytes, left open between coinb1 and coinb2. */
  extranonceSize: number;
}

/**
 * A Stratum-shaped job for a getblocktemplate answer. The template's hashes arrive in display
 * order (byte-reversed); the header and merkle tree want internal order.
 */
export function jobFromTemplate(template: BlockTemplate, options: TemplateJobOptions): TemplateJob {
  const bits = parseInt(template.bits, 16);
  const target = nbitsToTarget(bits);
  if (target !== BigInt(`0x${template.target}`)) {
    throw new UnsupportedTemplateError(`template target does not match bits ${template.bits}`);
  }
  const commitment = template.default_witness_commitment;
  const outputs = [{ value: BigInt(template.coinbasevalue), script: options.payoutScript }];
  // Consensus takes the last output carrying the commitment pattern, so it goes last.
  if (commitment !== undefined) {
    outputs.push({ value: 0n, script: parseHex(commitment, 'default_witness_commitment') });
  }
  const { coinb1, coinb2 } = buildCoinbase({
    height: template.height,
    extranonceSize: options.extranonceSize,
    tag: options.tag,
    outputs,
  });
  const mwebBlock = template.mweb === undefined ? null : parseHex(template.mweb, 'mweb');
  // Every template transaction is a merkle leaf, the HogEx (last, once MWEB is active) too.
  const txids = template.transactions.map((tx, i) =>
    reversed(parseHex(tx.txid, `transactions[${i}].txid`, 32)),
  );
  const job: Job = {
    jobId: options.jobId,
    prevhash: prevhashToStratum(reversed(parseHex(template.previousblockhash, 'prevhash', 32))),
    coinb1: toHex(coinb1),
    coinb2: toHex(coinb2),
    merkleBranch: merkleBranchesForCoinbase(txids).map(toHex),
    version: u32ToHex(template.version),
    nbits: template.bits.toLowerCase(),
    ntime: u32ToHex(template.curtime),
    clean: options.clean,
  };
  return { job, template, target, witness: commitment !== undefined, mwebBlock };
}
