import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { serializeBlock } from '../../src/sources/gbt-block.js';
import { withCoinbaseWitness } from '../../src/sources/gbt-coinbase.js';
import { jobFromTemplate } from '../../src/sources/gbt-job.js';
import { isHogEx } from '../../src/sources/gbt-mweb.js';
import { GBT_VERSION_MASK } from '../../src/sources/gbt-source.js';
import {
  type BlockTemplate,
  blockTemplateSchema,
  checkTemplateSupported,
  UnsupportedTemplateError,
} from '../../src/sources/gbt-template.js';
import { sha256d } from '../../src/work/hash.js';
import { headerFromJob, parseHeader } from '../../src/work/header.js';
import { parseHex, reversed, toHex } from '../../src/work/hex.js';
import { merkleRoot } from '../../src/work/merkle.js';

/**
 * MWEB block building against blocks Litecoin Core 0.21.2.1 accepted on regtest: each fixture
 * entry is a real getblocktemplate answer, the share mined on it, and the block as the node
 * stored it (captured by gbt-mweb-regtest.test.ts). The activation block carries a peg-in and
 * the HogEx; the next ones the HogEx alone; the last an MWEB-only transaction, which is in
 * the extension block and nowhere in `transactions`.
 */

const fixtureSchema = z.object({
  node: z.string(),
  blocks: z.array(
    z.object({
      height: z.number(),
      template: z.unknown(),
      payoutScript: z.string(),
      coinbaseTag: z.string(),
      extranonce1: z.string(),
      share: z.object({ extranonce2: z.string(), ntime: z.string(), nonce: z.string() }),
      hash: z.string(),
      block: z.string(),
    }),
  ),
});

const fixture = fixtureSchema.parse(
  JSON.parse(readFileSync(new URL('../fixtures/mweb-blocks.json', import.meta.url), 'utf8')),
);
const cases = fixture.blocks.map((entry) => ({
  ...entry,
  template: blockTemplateSchema.parse(entry.template),
}));
const [activation] = cases;
if (activation === undefined) throw new Error('empty fixture');

/** Build the block for a fixture entry the way GbtSource.submit does. */
function build(entry: (typeof cases)[number], template: BlockTemplate = entry.template) {
  const work = jobFromTemplate(template, {
    jobId: '1',
    clean: true,
    payoutScript: parseHex(entry.payoutScript, 'payoutScript'),
    tag: new TextEncoder().encode(entry.coinbaseTag),
    extranonceSize: 12,
  });
  const share = { jobId: '1', ...entry.share };
  const { header, coinbase } = headerFromJob(work.job, entry.extranonce1, share, GBT_VERSION_MASK);
  const block = serializeBlock(
    header,
    work.witness ? withCoinbaseWitness(coinbase) : coinbase,
    template.transactions.map((tx) => parseHex(tx.data, 'tx')),
    work.mwebBlock,
  );
  return { header, coinbase, block, work };
}

const txData = (template: BlockTemplate, index: number): Uint8Array =>
  parseHex(template.transactions.at(index)?.data, 'tx');

describe('MWEB blocks from real regtest templates', () => {
  it('the fixture covers the activation block, HogEx-only blocks and an MWEB-only transaction', () => {
    expect(fixture.node).toBe('/LitecoinCore:0.21.2.1/');
    expect(activation.height).toBe(432);
    expect(activation.template.transactions).toHaveLength(2);
    expect(cases.slice(1).every((c) => c.template.transactions.length === 1)).toBe(true);
    expect(cases.every((c) => c.template.rules.includes('mweb'))).toBe(true);
  });

  it.each(cases.map((c) => [c.height, c] as const))(
    'rebuilds block %i byte for byte as the node accepted it',
    (_height, entry) => {
      expect(() => checkTemplateSupported(entry.template)).not.toThrow();
      const { header, coinbase, block } = build(entry);
      expect(toHex(block)).toBe(entry.block);
      expect(toHex(reversed(sha256d(header)))).toBe(entry.hash);

      // The HogEx is a plain merkle leaf, last; the template's transactions follow our
      // coinbase unchanged, then 0x01 and the extension block close the block.
      const txids = [
        sha256d(coinbase),
        ...entry.template.transactions.map((t) => reversed(parseHex(t.txid, 'txid'))),
      ];
      expect(toHex(parseHeader(header).merkleRoot)).toBe(toHex(merkleRoot(txids)));
      const tail = entry.template.transactions.map((t) => t.data).join('') + '01';
      expect(entry.block.endsWith(tail + entry.template.mweb)).toBe(true);
    },
  );
});

describe('isHogEx', () => {
  it('tells the HogEx from ordinary transactions', () => {
    for (const entry of cases) expect(isHogEx(txData(entry.template, -1))).toBe(true);
    // The peg-in is an ordinary segwit transaction.
    expect(isHogEx(txData(activation.template, 0))).toBe(false);
    // Our coinbase in both serializations.
    const { coinbase } = build(activation);
    expect(isHogEx(coinbase)).toBe(false);
    expect(isHogEx(withCoinbaseWitness(coinbase))).toBe(false);
  });

  it('refuses damaged HogEx data', () => {
    const hogEx = txData(activation.template, -1);
    expect(isHogEx(hogEx.subarray(0, hogEx.length - 1))).toBe(false);
    expect(isHogEx(new Uint8Array([...hogEx, 0]))).toBe(false);
    const withMwebPart = Uint8Array.from(hogEx);
    withMwebPart[hogEx.length - 5] = 0x01; // an MWEB transaction, not the HogEx
    expect(isHogEx(withMwebPart)).toBe(false);
    const unknownFlag = Uint8Array.from(hogEx);
    unknownFlag[5] = 0x0a;
    expect(isHogEx(unknownFlag)).toBe(false);
    expect(isHogEx(new Uint8Array())).toBe(false);
  });
});

describe('checkTemplateSupported with MWEB', () => {
  const template = activation.template;
  const refused = (t: BlockTemplate): string => {
    try {
      checkTemplateSupported(t);
    } catch (err) {
      expect(err).toBeInstanceOf(UnsupportedTemplateError);
      return (err as Error).message;
    }
    throw new Error('template was accepted');
  };

  it('refuses an MWEB template whose last transaction is not the HogEx', () => {
    const [pegIn, hogEx] = template.transactions;
    expect(refused({ ...template, transactions: [hogEx, pegIn].flatMap((t) => t ?? []) })).toBe(
      'template carries an MWEB block but its last transaction is not the HogEx',
    );
    expect(refused({ ...template, transactions: [] })).toMatch(/not the HogEx/);
  });

  it('refuses an active MWEB rule without the extension block', () => {
    expect(refused({ ...template, mweb: undefined })).toBe(
      'MWEB is active but the template has no mweb block',
    );
  });

  it('refuses an extension block that is not hex', () => {
    expect(blockTemplateSchema.safeParse({ ...template, mweb: 'xyz' }).success).toBe(false);
    expect(blockTemplateSchema.safeParse({ ...template, mweb: '' }).success).toBe(false);
  });
});

describe('serializeBlock with an extension block', () => {
  it('appends 0x01 and the extension after the transactions', () => {
    const header = new Uint8Array(80);
    const coinbase = Uint8Array.of(0xcb);
    const hogEx = Uint8Array.of(0x4e);
    expect(toHex(serializeBlock(header, coinbase, [hogEx], Uint8Array.of(0xaa, 0xbb)))).toBe(
      `${'00'.repeat(80)}02cb4e01aabb`,
    );
    expect(() => serializeBlock(header, coinbase, [], Uint8Array.of(0xaa))).toThrow(RangeError);
  });
});
