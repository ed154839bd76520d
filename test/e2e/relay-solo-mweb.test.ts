import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { CircuitClient } from '../../src/client/circuit-client.js';
import type { JobParams } from '../../src/protocol/messages.js';
import { parseRelayConfig } from '../../src/relay/config.js';
import { type Relay, startRelay } from '../../src/relay/relay.js';
import type { SubmitOutcome } from '../../src/sources/work-source.js';
import { prevhashFromStratum } from '../../src/work/header.js';
import { reversed, toHex } from '../../src/work/hex.js';
import { grindShare } from '../helpers/grind.js';
import {
  MWEB_ACTIVATES,
  MWEB_ACTIVATION_HEIGHT,
  prepareMwebActivation,
  type RegtestNetwork,
  type RegtestNode,
  startRegtestNetwork,
  waitFor,
} from '../helpers/litecoind.js';

/**
 * Solo mode on a Litecoin chain with MWEB (as mainnet has since 2022): two litecoind regtest
 * nodes that let MWEB activate at height 432, a peg-in waiting for the activation block
 * (docs/design.md §3.2), the relay's getblocktemplate source, and a circuit client whose
 * shares become the activation block and the MWEB blocks after it.
 */

let net: RegtestNetwork;
let node: RegtestNode;
let relay: Relay;
let pegIn: string;
const dir = mkdtempSync(join(tmpdir(), 'powbridge-e2e-mweb-'));

const prevhashOf = (job: JobParams): string => toHex(reversed(prevhashFromStratum(job.prevhash)));

const blockSchema = z.object({
  height: z.number(),
  tx: z.array(
    z.object({
      txid: z.string(),
      vout: z.array(z.object({ scriptPubKey: z.object({ type: z.string(), hex: z.string() }) })),
    }),
  ),
  mweb: z.object({ hash: z.string() }),
});

beforeAll(async () => {
  net = await startRegtestNetwork([
    { auth: 'password', extraConfig: [MWEB_ACTIVATES] },
    { auth: 'cookie', extraConfig: [MWEB_ACTIVATES] },
  ]);
  node = net.nodes[0] as RegtestNode;
  await node.rpc('createwallet', 'relay');
  const payoutAddress = z.string().parse(await node.walletRpc('relay', 'getnewaddress'));
  pegIn = await prepareMwebActivation(node, 'relay');
  const auth =
    'cookieFile' in node.auth
      ? { rpcCookieFile: node.auth.cookieFile }
      : { rpcUser: node.auth.user, rpcPassword: node.auth.password };
  relay = await startRelay(
    parseRelayConfig({
      relay: { listen: '127.0.0.1:0', dataDir: join(dir, 'data') },
      log: { level: 'silent' },
      source: {
        type: 'node',
        algorithm: 'scrypt',
        node: {
          rpcUrl: node.rpcUrl,
          payoutAddress,
          ...auth,
          pollIntervalSeconds: 1,
        },
      },
    }),
  );
  await waitFor('relay upstream live', () =>
    Promise.resolve(relay.stratifier.upstreamState === 'live'),
  );
}, 90_000);

afterAll(async () => {
  await relay?.close();
  await net?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('relay in solo mode on an MWEB chain', () => {
  it('mines the MWEB activation block and the blocks after it; both nodes agree', async () => {
    const client = await CircuitClient.connect(`${relay.url.replace('http', 'ws')}/v1/circuit`);
    try {
      let job: JobParams | null = null;
      client.on('job', (j) => {
        job = j;
      });
      const session = await client.request('mining.register', { agent: 'e2e', mode: 'donate' });
      // Shares at the network difficulty are blocks whatever difficulty the client is given.
      const network = z.number().parse(await node.rpc('getdifficulty')) * 65536;
      const difficulty = Math.max(session.difficulty, network);

      const blocks: string[] = [];
      relay.stratifier.on('block', ({ outcome }: { outcome: SubmitOutcome | null }) => {
        if (outcome?.accepted && outcome.block) blocks.push(outcome.block);
      });
      for (let i = 0; i < 3; i++) {
        const tip = z.string().parse(await node.rpc('getbestblockhash'));
        // A job on the current tip (jobs for the tip before may still be on their way).
        await waitFor('a job on the tip', () =>
          Promise.resolve(job !== null && prevhashOf(job) === tip),
        );
        const current = job as unknown as JobParams;
        const share = await grindShare(
          'scrypt',
          current,
          session.extranonce1,
          session.extranonce2Size,
          difficulty,
          { extranonce2: i + 1 },
        );
        const result = await client.request('mining.submit', {
          jobId: share.jobId,
          extranonce2: share.extranonce2,
          ntime: share.ntime,
          nonce: share.nonce,
        });
        expect(result.accepted).toBe(true);
        await waitFor('block accepted', () => Promise.resolve(blocks.length === i + 1));
        expect(await node.rpc('getbestblockhash')).toBe(blocks[i]);
      }
      expect(await node.rpc('getblockcount')).toBe(MWEB_ACTIVATION_HEIGHT + 2);

      // The second node follows over P2P and sees the same blocks.
      const other = net.nodes[1] as RegtestNode;
      await waitFor(
        'node 2 synced',
        async () => (await other.rpc('getbestblockhash')) === blocks[2],
      );
      for (const [i, hash] of blocks.entries()) {
        const mine = blockSchema.parse(await node.rpc('getblock', hash, 2));
        const theirs = blockSchema.parse(await other.rpc('getblock', hash, 2));
        expect(theirs).toEqual(mine);
        expect(mine.height).toBe(MWEB_ACTIVATION_HEIGHT + i);
        // Coinbase, (the peg-in in the activation block,) then the HogEx committing to the
        // extension block.
        expect(mine.tx).toHaveLength(i === 0 ? 3 : 2);
        const hogEx = mine.tx.at(-1)?.vout[0]?.scriptPubKey;
        expect(hogEx).toEqual({ type: 'witness_mweb_hogaddr', hex: `5820${mine.mweb.hash}` });
      }
      const first = blockSchema.parse(await node.rpc('getblock', blocks[0], 2));
      expect(first.tx[1]?.txid).toBe(pegIn);
      const info = z
        .object({ softforks: z.object({ mweb: z.object({ active: z.boolean() }) }) })
        .parse(await other.rpc('getblockchaininfo'));
      expect(info.softforks.mweb.active).toBe(true);
    } finally {
      await client.close();
    }
  }, 60_000);
});
