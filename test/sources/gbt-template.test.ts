import { describe, expect, it } from 'vitest';
import { jobFromTemplate } from '../../src/sources/gbt-job.js';
import {
  type BlockTemplate,
  blockTemplateSchema,
  checkTemplateSupported,
  UnsupportedTemplateError,
} from '../../src/sources/gbt-template.js';
import { sha256d } from '../../src/work/hash.js';
import { prevhashFromStratum } from '../../src/work/header.js';
import { concatBytes, parseHex, reversed, toHex } from '../../src/work/hex.js';

/** A template as Litecoin Core 0.21.2.1 returned it on regtest (transactions added below). */
const REGTEST_TEMPLATE = {
  capabilities: ['proposal'],
  version: 536870912,
  rules: ['csv', '!segwit', 'taproot'],
  vbavailable: {},
  vbrequired: 0,
  previousblockhash: '154b0bff7168cef2537d5bc1ac92a4e8ec2a15c172e68e885b206b771babfa24',
  transactions: [],
  coinbaseaux: {},
  coinbasevalue: 5000000000,
  longpollid: '154b0bff7168cef2537d5bc1ac92a4e8ec2a15c172e68e885b206b771babfa244',
  target: '7fffff0000000000000000000000000000000000000000000000000000000000',
  mintime: 1795291094,
  mutable: ['time', 'transactions', 'prevblock'],
  noncerange: '00000000ffffffff',
  sigoplimit: 80000,
  sizelimit: 4000000,
  weightlimit: 4000000,
  curtime: 1795291094,
  bits: '207fffff',
  height: 2,
  default_witness_commitment:
    '6a24aa21a9ede2f61c3f71d1defd3fa999dfa36953755c690689799962b48bebd836974e8cf9',
};

const parse = (overrides: Record<string, unknown> = {}): BlockTemplate =>
  blockTemplateSchema.parse({ ...REGTEST_TEMPLATE, ...overrides });

const options = {
  jobId: '1',
  clean: true,
  payoutScript: parseHex('0014' + '11'.repeat(20), 'script'),
  tag: new Uint8Array(),
  extranonceSize: 12,
};

describe('blockTemplateSchema', () => {
  it('accepts what the node sends and rejects broken fields', () => {
    expect(parse().height).toBe(2);
    for (const bad of [
      { bits: '207fff' },
      { previousblockhash: 'zz' },
      { coinbasevalue: -1 },
      { height: 0 },
      { transactions: [{ data: 'abc', txid: '00'.repeat(32) }] },
      { transactions: [{ data: '00', txid: '00' }] },
    ]) {
      expect(blockTemplateSchema.safeParse({ ...REGTEST_TEMPLATE, ...bad }).success).toBe(false);
    }
  });
});

describe('checkTemplateSupported', () => {
  it('accepts Litecoin regtest templates with segwit forced', () => {
    expect(() => checkTemplateSupported(parse())).not.toThrow();
  });

  it('refuses MWEB templates without their HogEx or extension block, unknown forced rules and segwit without commitment', () => {
    // MWEB templates themselves are built (gbt-mweb.test.ts); these lack what the block needs.
    expect(() => checkTemplateSupported(parse({ rules: ['!segwit', 'mweb'] }))).toThrow(
      'MWEB is active but the template has no mweb block',
    );
    expect(() => checkTemplateSupported(parse({ mweb: '00' }))).toThrow(
      'template carries an MWEB block but its last transaction is not the HogEx',
    );
    expect(() => checkTemplateSupported(parse({ rules: ['!segwit', '!newrule'] }))).toThrow(
      /unknown rule newrule/,
    );
    expect(() => checkTemplateSupported(parse({ default_witness_commitment: undefined }))).toThrow(
      UnsupportedTemplateError,
    );
  });
});

describe('jobFromTemplate', () => {
  it('maps template fields to the Stratum job form', () => {
    const { job, target, witness } = jobFromTemplate(parse(), options);
    expect(job).toMatchObject({
      jobId: '1',
      version: '20000000',
      nbits: '207fffff',
      ntime: (1795291094).toString(16),
      clean: true,
      merkleBranch: [],
    });
    expect(toHex(reversed(prevhashFromStratum(job.prevhash)))).toBe(
      REGTEST_TEMPLATE.previousblockhash,
    );
    expect(target).toBe(0x7fffffn << 232n);
    expect(witness).toBe(true);
    // BIP34 height 2 = OP_2, then the open extranonce; the commitment output is last.
    expect(job.coinb1.endsWith('0d52')).toBe(true);
    expect(job.coinb2.endsWith(REGTEST_TEMPLATE.default_witness_commitment + '00000000')).toBe(
      true,
    );
  });

  it('builds merkle branches from display-order txids', () => {
    const txids = ['aa', 'bb', 'cc'].map((b) => b.repeat(31) + '01');
    const transactions = txids.map((txid) => ({ data: '00', txid }));
    const { job } = jobFromTemplate(parse({ transactions }), options);
    const [t1, t2, t3] = txids.map((t) => reversed(parseHex(t, 'txid', 32))) as [
      Uint8Array,
      Uint8Array,
      Uint8Array,
    ];
    expect(job.merkleBranch).toEqual([toHex(t1), toHex(sha256d(concatBytes(t2, t3)))]);
  });

  it('refuses a template whose target does not match its bits', () => {
    expect(() => jobFromTemplate(parse({ target: '7f'.repeat(32) }), options)).toThrow(
      UnsupportedTemplateError,
    );
  });
});
