import { randomBytes } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { bip34HeightPush } from '../../src/sources/gbt-coinbase.js';
import { GBT_VERSION_MASK, GbtSource, type GbtSourceConfig } from '../../src/sources/gbt-source.js';
import { NodeRpc } from '../../src/sources/node-rpc.js';
import type {
  SourceJob,
  SourceState,
  UpstreamShare,
  UpstreamTerms,
} from '../../src/sources/work-source.js';
import { headerFromJob, prevhashFromStratum } from '../../src/work/header.js';
import { sha256d } from '../../src/work/hash.js';
import {
  concatBytes,
  parseHex,
  parseU32Hex,
  reversed,
  toHex,
  u32ToHex,
} from '../../src/work/hex.js';
import { createPowHasher, type PowHasher } from '../../src/work/pow.js';
import { hashMeetsTarget, nbitsToTarget } from '../../src/work/target.js';
import {
  type RegtestNetwork,
  type RegtestNode,
  type RpcRecorder,
  startRegtestNetwork,
  startRpcRecorder,
  waitFor,
} from '../helpers/litecoind.js';
import { z } from 'zod';

/**
 * The solo source against two real litecoind regtest nodes (node 0: rpcuser/rpcpassword,
 * node 1: cookie auth, connected to node 0). Every block is checked by the node itself, and
 * byte for byte against what the source sent (submitblock would silently repair a coinbase
 * without its witness nonce, so acceptance alone proves too little).
 */

let net: RegtestNetwork;
let a: RegtestNode;
let b: RegtestNode;
let recorder: RpcRecorder;
let hasher: PowHasher;
let payoutAddress: string;
let payoutScript: string;
const sources: GbtSource[] = [];

const blockSchema = z.object({
  hash: z.string(),
  height: z.number(),
  version: z.number(),
  tx: z.array(
    z.object({
      txid: z.string(),
      vin: z.array(
        z.object({ coinbase: z.string().optional(), txinwitness: z.array(z.string()).optional() }),
      ),
      vout: z.array(z.object({ value: z.number(), scriptPubKey: z.object({ hex: z.string() }) })),
    }),
  ),
});

async function getBlock(node: RegtestNode, hash: string) {
  return blockSchema.parse(await node.rpc('getblock', hash, 2));
}

function makeSource(config: Partial<GbtSourceConfig> = {}): GbtSource {
  const source = new GbtSource({
    rpcUrl: recorder.url,
    auth: a.auth,
    payoutAddress,
    pollIntervalMs: 300,
    jobRefreshMs: 0,
    retry: { minMs: 100, maxMs: 400 },
    ...config,
  });
  sources.push(source);
  return source;
}

/** Resolve with the next matching event; subscribe before causing it. */
function next<T>(
  source: GbtSource,
  event: 'job' | 'terms' | 'state' | 'message',
  accept: (value: T) => boolean = () => true,
  timeoutMs = 15_000,
): Promise<T> {
  const emitter = source as unknown as EventEmitter;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      reject(new Error(`no matching ${event} event within ${timeoutMs} ms`));
    }, timeoutMs);
    const listener = (value: T): void => {
      if (!accept(value)) return;
      clearTimeout(timer);
      emitter.off(event, listener);
      resolve(value);
    };
    emitter.on(event, listener);
  });
}

const nextJob = (s: GbtSource, accept?: (j: SourceJob) => boolean, ms?: number) =>
  next<SourceJob>(s, 'job', accept, ms);
const nextState = (s: GbtSource, state: SourceState) =>
  next<SourceState>(s, 'state', (v) => v === state);

/**
 * Try nonces until the header does (or, for the negative case, does not) meet the network
 * target. Regtest's target is 7fffff…, so about every second scrypt hash is a block.
 */
async function grind(
  job: SourceJob,
  extranonce1: string,
  wantBlock: boolean,
  versionBits?: string,
): Promise<UpstreamShare> {
  const target = nbitsToTarget(parseU32Hex(job.nbits, 'nbits'));
  const extranonce2 = toHex(randomBytes(8));
  for (let nonce = 0; nonce < 1_000; nonce++) {
    const share: UpstreamShare = {
      session: job.session,
      jobId: job.jobId,
      extranonce2,
      ntime: job.ntime,
      nonce: u32ToHex(nonce),
      ...(versionBits === undefined ? {} : { versionBits }),
    };
    const { header } = headerFromJob(job, extranonce1, share, GBT_VERSION_MASK);
    if (hashMeetsTarget(await hasher(header), target) === wantBlock) return share;
  }
  throw new Error('no suitable nonce in 1000 tries');
}

/**
 * Whether a job's merkle branches are those of coinbase + exactly these three transactions,
 * in any order: leaves [cb, t1, t2, t3] give branches [t1, sha256d(t2 ‖ t3)].
 */
function carriesExactly(job: SourceJob, txids: readonly string[]): boolean {
  if (txids.length !== 3 || job.merkleBranch.length !== 2) return false;
  const internal = txids.map((t) => reversed(parseHex(t, 'txid', 32)));
  return internal.some((first, i) => {
    const [x, y] = internal.filter((_, j) => j !== i) as [Uint8Array, Uint8Array];
    return (
      job.merkleBranch[0] === toHex(first) &&
      [concatBytes(x, y), concatBytes(y, x)].some(
        (pair) => toHex(sha256d(pair)) === job.merkleBranch[1],
      )
    );
  });
}

function displayPrevhash(job: SourceJob): string {
  return toHex(reversed(prevhashFromStratum(job.prevhash)));
}

function lastSubmitted(): string {
  const calls = recorder.calls.filter((c) => c.method === 'submitblock');
  const hex = calls.at(-1)?.params[0];
  if (typeof hex !== 'string') throw new Error('no submitblock went through the recorder');
  return hex;
}

beforeAll(async () => {
  net = await startRegtestNetwork([{ auth: 'password' }, { auth: 'cookie' }]);
  [a, b] = net.nodes as [RegtestNode, RegtestNode];
  await a.rpc('createwallet', 'miner');
  payoutAddress = z.string().parse(await a.walletRpc('miner', 'getnewaddress'));
  payoutScript = z
    .object({ scriptPubKey: z.string() })
    .parse(await a.rpc('validateaddress', payoutAddress)).scriptPubKey;
  // Out of initial block download: getblocktemplate refuses to work before the first block.
  await a.rpc('generatetoaddress', 1, payoutAddress);
  await waitFor('node 1 to sync', async () => (await b.rpc('getblockcount')) === 1);
  recorder = await startRpcRecorder(a.rpcUrl);
  hasher = await createPowHasher('scrypt');
}, 60_000);

afterEach(async () => {
  await Promise.all(sources.splice(0).map((s) => s.stop()));
});

afterAll(async () => {
  await Promise.all(sources.splice(0).map((s) => s.stop()));
  await recorder?.close();
  await net?.stop();
});

describe('GbtSource on litecoind regtest', { timeout: 30_000 }, () => {
  it('mines blocks the node accepts exactly as submitted', async () => {
    const source = makeSource({ coinbaseTag: '/powbridge-test/' });
    const firstTerms = next<UpstreamTerms>(source, 'terms');
    const firstJob = nextJob(source);
    source.start();
    const [terms, job] = await Promise.all([firstTerms, firstJob]);

    // Terms: our own extranonce1, room for client slots, network difficulty in scrypt units
    // (Core's getdifficulty is in sha256 units; scrypt pools quote 65536 times that).
    expect(terms.extranonce1).toMatch(/^[0-9a-f]{8}$/);
    expect(terms.extranonce1).toBe(source.extranonce1);
    expect(terms).toMatchObject({
      session: job.session,
      extranonce2Size: 8,
      versionMask: 0x1fffe000,
    });
    const networkDifficulty = z.number().parse(await a.rpc('getdifficulty')) * 65536;
    expect(Math.abs(terms.difficulty / networkDifficulty - 1)).toBeLessThan(1e-9);
    expect(source.status()).toMatchObject({ state: 'live', terms, job });

    expect(displayPrevhash(job)).toBe(await a.rpc('getbestblockhash'));
    expect(job.clean).toBe(true);
    expect(job.nbits).toBe('207fffff');

    // A share below the network target is not a block and never reaches submitblock.
    const weak = await grind(job, terms.extranonce1, false);
    await expect(source.submit(weak)).resolves.toEqual({
      accepted: false,
      reason: 'share does not meet network target',
    });
    expect(recorder.calls.some((c) => c.method === 'submitblock')).toBe(false);

    // Shares the source must refuse without asking the node.
    const share = await grind(job, terms.extranonce1, true);
    await expect(source.submit({ ...share, jobId: 'nope' })).resolves.toMatchObject({
      accepted: false,
      code: 21,
    });
    await expect(source.submit({ ...share, session: share.session + 1 })).resolves.toMatchObject({
      accepted: false,
      code: 21,
    });
    await expect(source.submit({ ...share, extranonce2: '00' })).resolves.toMatchObject({
      accepted: false,
      code: 20,
    });
    await expect(source.submit({ ...share, versionBits: '00000001' })).resolves.toMatchObject({
      accepted: false,
      code: 20,
    });

    const afterBlock = nextJob(source, (j) => j.clean);
    // A second block of the same height, found at the same moment, is not sent to the node
    // (on regtest nearly every share is a block: sending them all floods its RPC queue).
    const twin = await grind(job, terms.extranonce1, true);
    const submittedBefore = recorder.calls.filter((c) => c.method === 'submitblock').length;
    const [outcome, twinOutcome] = await Promise.all([source.submit(share), source.submit(twin)]);
    expect(twinOutcome.accepted).toBe(false);
    expect(twinOutcome).toHaveProperty(
      'reason',
      expect.stringMatching(/^stale block: height \d+ is already solved$/) as unknown,
    );
    expect(recorder.calls.filter((c) => c.method === 'submitblock')).toHaveLength(
      submittedBefore + 1,
    );
    expect(outcome).toMatchObject({ accepted: true });
    const hash = (outcome as { block: string }).block;
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(await a.rpc('getbestblockhash')).toBe(hash);
    expect(await a.rpc('getblock', hash, 0)).toBe(lastSubmitted());
    const block = await getBlock(a, hash);
    const coinbase = block.tx[0]!;
    expect(coinbase.vin[0]!.coinbase).toBe(
      toHex(bip34HeightPush(block.height)) +
        terms.extranonce1 +
        share.extranonce2 +
        Buffer.from('/powbridge-test/').toString('hex'),
    );
    expect(coinbase.vin[0]!.txinwitness).toEqual(['00'.repeat(32)]);
    expect(coinbase.vout[0]).toMatchObject({ value: 50, scriptPubKey: { hex: payoutScript } });
    expect(coinbase.vout[1]!.scriptPubKey.hex).toMatch(/^6a24aa21a9ed/);

    // The next job builds on our block; mine it with BIP320 version bits rolled.
    const job2 = await afterBlock;
    expect(displayPrevhash(job2)).toBe(hash);
    const rolled = await grind(job2, terms.extranonce1, true, '1234a000');
    const outcome2 = await source.submit(rolled);
    expect(outcome2).toMatchObject({ accepted: true });
    const hash2 = (outcome2 as { block: string }).block;
    expect(await a.rpc('getblock', hash2, 0)).toBe(lastSubmitted());
    const block2 = await getBlock(a, hash2);
    expect(block2.version >>> 0).toBe(
      ((parseU32Hex(job2.version, 'v') & ~0x1fffe000) | 0x1234a000) >>> 0,
    );
    await waitFor('node 1 to follow', async () => (await b.rpc('getbestblockhash')) === hash2);
  });

  it('mines a block carrying wallet transactions', async () => {
    const minerAddress = z.string().parse(await a.walletRpc('miner', 'getnewaddress'));
    // 130 blocks: coinbase maturity (100) and BIP34 heights past the 128 push-size boundary.
    await a.rpc('generatetoaddress', 130, minerAddress);
    // Our BIP34 encoding must agree with every coinbase Core itself wrote.
    const tip = z.number().parse(await a.rpc('getblockcount'));
    for (let h = 1; h <= tip; h++) {
      const block = await getBlock(a, z.string().parse(await a.rpc('getblockhash', h)));
      const push = toHex(bip34HeightPush(h));
      expect(block.tx[0]!.vin[0]!.coinbase!.slice(0, push.length), `height ${h}`).toBe(push);
    }

    const source = makeSource();
    const first = nextJob(source);
    source.start();
    const empty = await first;
    expect(empty.merkleBranch).toEqual([]);

    // New transactions on the same tip: a non-clean job (Core caches a template for a few
    // seconds, so it may take a refresh or two). Wait for the job carrying all three.
    const txids: string[] = [];
    const withTxs = nextJob(source, (j) => carriesExactly(j, txids));
    for (const amount of [1, 2.5, 4]) {
      const to = await a.walletRpc('miner', 'getnewaddress');
      txids.push(z.string().parse(await a.walletRpc('miner', 'sendtoaddress', to, amount)));
    }
    const job = await withTxs;
    expect(job).toMatchObject({ clean: false, prevhash: empty.prevhash, session: empty.session });
    const outcome = await source.submit(await grind(job, source.extranonce1, true));
    expect(outcome).toMatchObject({ accepted: true });
    const hash = (outcome as { block: string }).block;

    expect(await a.rpc('getbestblockhash')).toBe(hash);
    expect(await a.rpc('getblock', hash, 0)).toBe(lastSubmitted());
    const block = await getBlock(a, hash);
    expect(block.height).toBe(tip + 1);
    expect(
      block.tx
        .slice(1)
        .map((t) => t.txid)
        .sort(),
    ).toEqual([...txids].sort());
    // The fees went to our payout output on top of the subsidy.
    expect(block.tx[0]!.vout[0]!.value).toBeGreaterThan(50);
    expect(await a.rpc('getrawmempool')).toEqual([]);
    await waitFor(
      'node 1 to accept the block',
      async () => (await b.rpc('getbestblockhash')) === hash,
    );
  });

  it('authenticates with the cookie file and explains a wrong password', async () => {
    const viaCookie = makeSource({ rpcUrl: b.rpcUrl, auth: b.auth });
    expect('cookieFile' in b.auth).toBe(true);
    const job = nextJob(viaCookie);
    viaCookie.start();
    expect(displayPrevhash(await job)).toBe(await b.rpc('getbestblockhash'));

    const wrong = makeSource({ rpcUrl: a.rpcUrl, auth: { user: 'powbridge', password: 'wrong' } });
    const down = nextState(wrong, 'down');
    const message = next<string>(wrong, 'message');
    wrong.start();
    await down;
    expect(await message).toMatch(/^RPC authentication failed at http:\/\/127\.0\.0\.1:\d+\/ /);
    expect(wrong.error).toBe(await message);
    expect(wrong.error).not.toContain('wrong');
    expect(wrong.status()).toMatchObject({ state: 'down', job: null, terms: null });

    const rpc = new NodeRpc({ url: a.rpcUrl, auth: { user: 'powbridge', password: 'wrong' } });
    await expect(rpc.call('getblockcount', [], z.number())).rejects.toMatchObject({ kind: 'auth' });
    rpc.close();

    const badAddress = makeSource({ payoutAddress: 'not-an-address' });
    const refused = next<string>(badAddress, 'message');
    badAddress.start();
    expect(await refused).toBe(
      "payout address not-an-address is not a valid address for the node's network",
    );
    expect(badAddress.status().state).toBe('down');
  });

  it('delivers a clean job by long-poll when another node finds a block', async () => {
    // A one-minute refresh: within the test only the long-poll can bring the new block.
    const source = makeSource({ pollIntervalMs: 60_000 });
    const first = nextJob(source);
    const callsBefore = recorder.calls.length;
    source.start();
    const job = await first;
    await waitFor('the long-poll to be in flight', () =>
      recorder.calls
        .slice(callsBefore)
        .some(
          (c) => c.method === 'getblocktemplate' && JSON.stringify(c.params).includes('longpollid'),
        ),
    );

    const clean = nextJob(source, (j) => j.clean, 10_000);
    const [found] = z.array(z.string()).parse(await b.rpc('generatetoaddress', 1, payoutAddress));
    const fresh = await clean;
    expect(displayPrevhash(fresh)).toBe(found);
    expect(fresh.session).toBe(job.session);

    // Stopping aborts the long-poll that is in flight again by now. Unaborted, the node would
    // hold it until the next block (up to the source's 10 min bound): the deadline only
    // tells that hang apart from a stop.
    let stopped = false;
    const stopping = source.stop().then(() => (stopped = true));
    await waitFor('stop() to abort the long-poll', () => stopped, 10_000);
    await stopping;
  });

  it('asks again when a long-poll is cut, without falling back to refreshes', async () => {
    const proxy = await startRpcRecorder(a.rpcUrl);
    try {
      const source = makeSource({ rpcUrl: proxy.url, pollIntervalMs: 60_000 });
      const first = nextJob(source);
      source.start();
      await first;
      const gbt = (long: boolean): number =>
        proxy.calls.filter(
          (call) =>
            call.method === 'getblocktemplate' &&
            JSON.stringify(call.params).includes('longpollid') === long,
        ).length;
      await waitFor('a long-poll', () => gbt(true) === 1);
      // Let it run past the spin guard, then cut it as a proxy or a restarting node would.
      await new Promise((resolve) => setTimeout(resolve, 1_200));
      proxy.cut();
      await waitFor('the long-poll to be asked again', () => gbt(true) === 2);

      const clean = nextJob(source, (j) => j.clean, 10_000);
      const [found] = z.array(z.string()).parse(await b.rpc('generatetoaddress', 1, payoutAddress));
      expect(displayPrevhash(await clean)).toBe(found);
      // Only the first template came without a longpollid: the long-poll brought the block.
      expect(gbt(false)).toBe(1);
      expect(source.status().state).toBe('live');
    } finally {
      await Promise.all(sources.splice(0).map((s) => s.stop()));
      await proxy.close();
    }
  });

  it('goes down when the node is unreachable and starts a new session when it is back', async () => {
    const proxy = await startRpcRecorder(a.rpcUrl);
    try {
      const source = makeSource({ rpcUrl: proxy.url });
      const first = nextJob(source);
      source.start();
      const job = await first;
      const share = await grind(job, source.extranonce1, true);

      const down = nextState(source, 'down');
      await proxy.pause();
      await down;
      expect(source.error).toMatch(
        /^node unreachable at http:\/\/127\.0\.0\.1:\d+\/ \(ECONNREFUSED\)$/,
      );
      const lost = await source.submit(share);
      expect(lost).toMatchObject({ accepted: false });
      expect((lost as { reason: string }).reason).toMatch(/^submitblock failed: node unreachable/);

      const live = nextState(source, 'live');
      const terms = next<UpstreamTerms>(source, 'terms');
      const fresh = nextJob(source);
      await proxy.resume();
      await live;
      expect((await terms).session).toBe(job.session + 1);
      expect(await fresh).toMatchObject({ clean: true, session: job.session + 1 });
      expect(source.error).toBeNull();
      // Work from before the outage is refused, not sent.
      await expect(source.submit(share)).resolves.toMatchObject({ accepted: false, code: 21 });
    } finally {
      await Promise.all(sources.splice(0).map((s) => s.stop()));
      await proxy.close();
    }
  });
});
