import { z } from 'zod';
import { parseHex } from '../work/hex.js';
import { isHogEx } from './gbt-mweb.js';

/**
 * Schemas for the node's answers the solo source relies on. Only the fields we use are
 * required; everything else the node sends is tolerated and ignored.
 */

const hex = z.string().regex(/^(?:[0-9a-fA-F]{2})*$/, 'expected hex');
const hash = z.string().regex(/^[0-9a-fA-F]{64}$/, 'expected a 32-byte hash in hex');

export const templateTransactionSchema = z.looseObject({
  /** Raw transaction, witness serialization when it has witnesses. */
  data: hex.min(2),
  /** Display order (byte-reversed); the merkle tree is built from these. */
  txid: hash,
});

export const blockTemplateSchema = z.looseObject({
  version: z.number().int().min(0).max(0xffffffff),
  rules: z.array(z.string()),
  previousblockhash: hash,
  transactions: z.array(templateTransactionSchema),
  coinbasevalue: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  longpollid: z.string().min(1).optional(),
  target: hash,
  curtime: z.number().int().min(0).max(0xffffffff),
  bits: z.string().regex(/^[0-9a-fA-F]{8}$/, 'expected 4 bytes of hex'),
  height: z.number().int().min(1).max(0x7fffffff),
  default_witness_commitment: hex.min(2).optional(),
  /** Present once MWEB is active: the serialized MWEB block that must follow the txs. */
  mweb: hex.min(2).optional(),
});

export type BlockTemplate = z.infer<typeof blockTemplateSchema>;

export const validateAddressSchema = z.looseObject({
  isvalid: z.boolean(),
  scriptPubKey: hex.optional(),
});

/** submitblock: null when the block was accepted, otherwise a BIP22 reason string. */
export const submitBlockResultSchema = z.string().nullable();

/** The rules we ask getblocktemplate for; Litecoin Core 0.21 requires both. */
export const GBT_RULES = ['segwit', 'mweb'] as const;

/** BIP9 "!rule" entries we know how to honour; an unknown one means we cannot build the block. */
const UNDERSTOOD_FORCED_RULES = new Set(['segwit', 'mweb']);

export class UnsupportedTemplateError extends Error {
  override name = 'UnsupportedTemplateError';
}

const ruleActive = (template: BlockTemplate, rule: string): boolean =>
  template.rules.some((r) => r.replace(/^!/, '') === rule);

/**
 * Refuse templates this builder would turn into invalid blocks, with a reason an operator can
 * act on. An MWEB template must end with the HogEx transaction: the block is serialized with
 * the extension after it (docs/design.md §3.2), and Core only reads the extension when the
 * block's last transaction is the HogEx.
 */
export function checkTemplateSupported(template: BlockTemplate): void {
  if (template.mweb !== undefined) {
    const last = template.transactions.at(-1);
    if (last === undefined || !isHogEx(parseHex(last.data, 'HogEx transaction'))) {
      throw new UnsupportedTemplateError(
        'template carries an MWEB block but its last transaction is not the HogEx',
      );
    }
  } else if (ruleActive(template, 'mweb')) {
    throw new UnsupportedTemplateError('MWEB is active but the template has no mweb block');
  }
  for (const rule of template.rules) {
    if (rule.startsWith('!') && !UNDERSTOOD_FORCED_RULES.has(rule.slice(1))) {
      throw new UnsupportedTemplateError(`template requires unknown rule ${rule.slice(1)}`);
    }
  }
  const segwit = ruleActive(template, 'segwit');
  if (segwit && template.default_witness_commitment === undefined) {
    // Core always sends one once segwit is active; without it witness transactions (and our
    // coinbase witness) would make an invalid block.
    throw new UnsupportedTemplateError(
      'segwit is active but the template has no witness commitment',
    );
  }
}
