import type { EventEmitter } from 'node:events';
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { GBT_VERSION_MASK, GbtSource } from '../../src/sources/gbt-source.js';
import { type BlockTemplate, blockTemplateSchema } from '../../src/sources/gbt-template.js';
import type { SourceJob, UpstreamShare } from '../../src/sources/work-source.js';
import { headerFromJob, prevhashFromStratum } from '../../src/work/header.js';
import { parseHex, parseU32Hex, reversed, toHex, u32ToHex } from '../../src/work/hex.js';
import { merkleBranchesForCoinbase } from '../../src/work/merkle.js';
import { createPowHasher, type PowHasher } from '../../src/work/pow.js';
import { hashMeetsTarget, nbitsToTarget } from '../../src/work/target.js';
import {
  MWEB_ACTIVATES,
  MWEB_ACTIVATION_HEIGHT,
  prepareMwebActivation,
  type RegtestNetwork,
  type RegtestNode,
  type RpcRecorder,
  startRegtestNetwork,
  startRpcRecorder,
  waitFor,
} from '../helpers/litecoind.js';

/**
 * MWEB solo mining against two real litecoind regtest nodes that let MWEB activate (at
 * height 432, with a peg-in waiting: docs/design.md §3.2). Every block goes through
 * getblocktemplate and submitblock; the node must accept it exactly as sent, and the second
 * node, which only hears of it over P2P, must hold the same bytes.
 *
 * `POWBRIDGE_CAPTURE_MWEB_FIXTURE=1` also writes the mined blocks with their templates to
 * test/fixtures/mweb-blocks.json, the fixture of gbt-mweb.test.ts (then run prettier on it).
 */

const FIXTURE = new URL('../fixtures/mweb-blocks.json', import.meta.url);
const TAG = '/powbridge-mweb/';

let net: RegtestNetwork;
let a: RegtestNode;
let b: RegtestNode;
let recorder: RpcRecorder;
let hasher: PowHasher;
let source: GbtSource;
let payoutScript: string;
let pegIn: string;
/** Blocks mined so far, for the fixture. */
const mined: Record<string, unknown>[] = [];

const blockSchema = z.object({
  hash: z.string(),
  height: z.number(),
  tx: z.array(
    z.object({
      txid: z.string(),
      vout: z.array(z.object({ scriptPubKey: z.object({ hex: z.string(), type: z.string() }) })),
    }),
  ),
  mweb: z.object({ hash: z.string(), height: z.number() }),
});

async function getBlock(node: RegtestNode, hash: string) {
  return blockSchema.parse(await node.rpc('getblock', hash, 2));
}

function nextJob(accept: (job: SourceJob) => boolean, timeoutMs = 15_000): Promise<SourceJob> {
  const emitter = source as unknown as EventEmitter;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off('job', listener);
      reject(new Error(`no matching job within ${timeoutMs} ms`));
    }, timeoutMs);
    const listener = (job: SourceJob): void => {
      if (!accept(job)) return;
      clearTimeout(timer);
      emitter.off('job', listener);
      resolve(job);
    };
    emitter.on('job', listener);
  });
}

const displayPrevhash = (job: SourceJob): string =>
  toHex(reversed(prevhashFromStratum(job.prevhash)));

/** The template (as the node sent it through the recorder) that a job was made from. */
function templateOf(job: SourceJob): { raw: unknown; template: BlockTemplate } {
  const candidates = recorder.calls
    .filter((c) => c.method === 'getblocktemplate' && c.result !== undefined)
    .map((c) => ({ raw: c.result, template: blockTemplateSchema.parse(c.result) }))
    .filter(
      ({ template: t }) =>
        t.previousblockhash === displayPrevhash(job) &&
        u32ToHex(t.curtime) === job.ntime &&
        merkleBranchesForCoinbase(t.transactions.map((tx) => reversed(parseHex(tx.txid, 'txid'))))
          .map(toHex)
          .join() === job.merkleBranch.join(),
    );
  const found = candidates.at(-1);
  if (found === undefined) throw new Error(`no recorded template for job ${job.jobId}`);
  return found;
}

/** The source's current job if it matches, else the next one that does (jobs come unasked). */
function jobWhere(accept: (job: SourceJob) => boolean): Promise<SourceJob> {
  const current = source.status().job;
  if (current !== null && accept(current)) return Promise.resolve(current);
  return nextJob(accept);
}

/** A share that is a block (regtest: about every second nonce). */
async function grindBlock(job: SourceJob, extranonce2: string): Promise<UpstreamShare> {
  const target = nbitsToTarget(parseU32Hex(job.nbits, 'nbits'));
  for (let nonce = 0; nonce < 1_000; nonce++) {
    const share = {
      session: job.session,
      jobId: job.jobId,
      extranonce2,
      ntime: job.ntime,
      nonce: u32ToHex(nonce),
    };
    const { header } = headerFromJob(job, source.extranonce1, share, GBT_VERSION_MASK);
    if (hashMeetsTarget(await hasher(header), target)) return share;
  }
  throw new Error('no block in 1000 nonces');
}

function lastSubmitted(): string {
  const hex = recorder.calls.filter((c) => c.method === 'submitblock').at(-1)?.params[0];
  if (typeof hex !== 'string') throw new Error('no submitblock went through the recorder');
  return hex;
}

/**
 * Mine `job` through the source and check the block on both nodes: accepted as sent, the
 * template's transactions after our coinbase with the HogEx last and unchanged, the MWEB
 * block appended (0x01 ‖ `mweb`) and committed to by the HogEx's output.
 */
async function mineAndCheck(job: SourceJob, extranonce2: string) {
  const { raw, template } = templateOf(job);
  expect(template.mweb).toBeDefined();
  const share = await grindBlock(job, extranonce2);
  const outcome = await source.submit(share);
  expect(outcome).toMatchObject({ accepted: true });
  const hash = (outcome as { block: string }).block;

  const sent = lastSubmitted();
  expect(await a.rpc('getbestblockhash')).toBe(hash);
  expect(await a.rpc('getblock', hash, 0)).toBe(sent);
  const hogEx = template.transactions.at(-1);
  expect(sent.endsWith(`${hogEx?.data}01${template.mweb}`)).toBe(true);

  const block = await getBlock(a, hash);
  expect(block.height).toBe(template.height);
  expect(block.tx.slice(1).map((t) => t.txid)).toEqual(template.transactions.map((t) => t.txid));
  const hogExOut = block.tx.at(-1)?.vout[0]?.scriptPubKey;
  expect(hogExOut?.type).toBe('witness_mweb_hogaddr');
  expect(hogExOut?.hex).toBe(`5820${block.mweb.hash}`);
  expect(block.mweb.height).toBe(template.height);

  // The second node got it over P2P, validated it and holds the same bytes.
  await waitFor('node 1 to follow', async () => (await b.rpc('getbestblockhash')) === hash);
  expect(await b.rpc('getblock', hash, 0)).toBe(sent);
  expect((await getBlock(b, hash)).tx.map((t) => t.txid)).toEqual(block.tx.map((t) => t.txid));

  mined.push({
    height: template.height,
    template: raw,
    payoutScript,
    coinbaseTag: TAG,
    extranonce1: source.extranonce1,
    share: { extranonce2: share.extranonce2, ntime: share.ntime, nonce: share.nonce },
    hash,
    block: sent,
  });
  return { hash, template, block };
}

beforeAll(async () => {
  net = await startRegtestNetwork([
    { auth: 'password', extraConfig: [MWEB_ACTIVATES] },
    { auth: 'cookie', extraConfig: [MWEB_ACTIVATES] },
  ]);
  [a, b] = net.nodes as [RegtestNode, RegtestNode];
  await a.rpc('createwallet', 'miner');
  const payoutAddress = z.string().parse(await a.walletRpc('miner', 'getnewaddress'));
  payoutScript = z
    .object({ scriptPubKey: z.string() })
    .parse(await a.rpc('validateaddress', payoutAddress)).scriptPubKey;
  pegIn = await prepareMwebActivation(a, 'miner');
  await waitFor(
    'node 1 to sync',
    async () => (await b.rpc('getblockcount')) === MWEB_ACTIVATION_HEIGHT - 1,
  );
  recorder = await startRpcRecorder(a.rpcUrl);
  hasher = await createPowHasher('scrypt');
  source = new GbtSource({
    rpcUrl: recorder.url,
    auth: a.auth,
    payoutAddress,
    coinbaseTag: TAG,
    pollIntervalMs: 300,
    jobRefreshMs: 0,
    retry: { minMs: 100, maxMs: 400 },
  });
}, 60_000);

afterAll(async () => {
  await source?.stop();
  if (process.env.POWBRIDGE_CAPTURE_MWEB_FIXTURE === '1' && mined.length > 0) {
    const { subversion } = z
      .object({ subversion: z.string() })
      .parse(await a.rpc('getnetworkinfo'));
    const fixture = { node: subversion, network: 'regtest', blocks: mined };
    writeFileSync(FIXTURE, `${JSON.stringify(fixture, null, 2)}\n`);
  }
  await recorder?.close();
  await net?.stop();
});

describe('GbtSource mining MWEB blocks on litecoind regtest', { timeout: 60_000 }, () => {
  it('mines the activation block with the peg-in, then MWEB blocks on top', async () => {
    const first = nextJob(() => true);
    source.start();
    const job = await first;
    // The activation block: coinbase, the peg-in, the HogEx. Both are merkle leaves.
    const { template } = templateOf(job);
    expect(template.height).toBe(MWEB_ACTIVATION_HEIGHT);
    expect(template.rules).toContain('mweb');
    expect(template.transactions.map((t) => t.txid)).toEqual([
      pegIn,
      expect.stringMatching(/^[0-9a-f]{64}$/) as unknown,
    ]);
    expect(job.merkleBranch).toHaveLength(2);
    expect(job.merkleBranch[0]).toBe(toHex(reversed(parseHex(pegIn, 'txid'))));

    const activation = await mineAndCheck(job, '0000000000000001');
    const info = z
      .object({
        softforks: z.object({ mweb: z.object({ active: z.boolean(), height: z.number() }) }),
      })
      .parse(await a.rpc('getblockchaininfo'));
    expect(info.softforks.mweb).toMatchObject({ active: true, height: MWEB_ACTIVATION_HEIGHT });
    expect(await a.walletRpc('miner', 'gettransaction', pegIn)).toMatchObject({
      blockhash: activation.hash,
    });

    // From here on every template carries the HogEx alone (no peg-in waiting).
    let tip = activation.hash;
    for (let i = 2; i <= 3; i++) {
      const next = await jobWhere((j) => displayPrevhash(j) === tip);
      expect(next.merkleBranch).toHaveLength(1);
      const found = await mineAndCheck(next, `000000000000000${i}`);
      expect(found.template.height).toBe(MWEB_ACTIVATION_HEIGHT + i - 1);
      tip = found.hash;
    }
  });

  it('carries MWEB-only transactions, which live in the extension block alone', async () => {
    const tip = z.string().parse(await a.rpc('getbestblockhash'));
    const to = z.string().parse(await a.walletRpc('miner', 'getnewaddress', '', 'mweb'));
    const txid = z.string().parse(await a.walletRpc('miner', 'sendtoaddress', to, 0.5));
    // An MWEB-to-MWEB transaction is not among the template's transactions: only the HogEx
    // changes (the fee leaves it) and the extension block grows by the transaction.
    const job = await jobWhere((j) => {
      if (displayPrevhash(j) !== tip) return false;
      const { template } = templateOf(j);
      // ~170 bytes of extension on an empty chain; a transaction's range proof alone is ~700.
      return template.transactions.length === 1 && (template.mweb?.length ?? 0) / 2 > 1_000;
    });
    const { hash } = await mineAndCheck(job, '0000000000000004');
    expect(await a.walletRpc('miner', 'gettransaction', txid)).toMatchObject({ blockhash: hash });
    expect(await a.rpc('getrawmempool')).toEqual([]);
  });
});
