import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { CircuitClient } from '../../src/client/circuit-client.js';
import { TicketClient } from '../../src/client/ticket-client.js';
import { KeyPin } from '../../src/tickets/key-pin.js';
import { TICKET_V2_VERSION } from '../../src/tickets/ticket-v2.js';
import { type JobParams, RSA_SCHEME } from '../../src/protocol/messages.js';
import { parseRelayConfig } from '../../src/relay/config.js';
import { type Relay, startRelay } from '../../src/relay/relay.js';
import type { SubmitOutcome } from '../../src/sources/work-source.js';
import { BIN } from '../helpers/cli.js';
import { grindShare } from '../helpers/grind.js';
import { issueTicketV2 } from '../helpers/ticket-v2.js';
import {
  type RegtestNetwork,
  type RegtestNode,
  startRegtestNetwork,
  waitFor,
} from '../helpers/litecoind.js';

/**
 * Solo mode end to end: two real litecoind -regtest nodes, the relay's getblocktemplate
 * source, a client over /v1/circuit mining real scrypt shares that become blocks.
 */

let net: RegtestNetwork;
let node: RegtestNode;
let payoutAddress: string;
let relay: Relay;
const dir = mkdtempSync(join(tmpdir(), 'powbridge-e2e-'));

function configFor(n: RegtestNode, listen = '127.0.0.1:0') {
  const auth =
    'cookieFile' in n.auth
      ? { rpcCookieFile: n.auth.cookieFile }
      : { rpcUser: n.auth.user, rpcPassword: n.auth.password };
  return {
    relay: { listen, dataDir: join(dir, 'data') },
    log: { level: 'silent' },
    source: {
      type: 'node',
      algorithm: 'scrypt',
      node: { rpcUrl: n.rpcUrl, payoutAddress, ...auth, pollIntervalSeconds: 1 },
    },
    // Regtest shares are ~3.05e-5 (getdifficulty 4.66e-10 × 2^16): at 2^-20 each is worth ~32
    // credits, more than the price of 12.
    difficulty: { ticketDifficulty: 2 ** -20 },
    tickets: { price: 12 },
  };
}

beforeAll(async () => {
  net = await startRegtestNetwork([{ auth: 'password' }, { auth: 'cookie' }]);
  node = net.nodes[0] as RegtestNode;
  await node.rpc('createwallet', 'relay');
  payoutAddress = z.string().parse(await node.walletRpc('relay', 'getnewaddress'));
  await node.rpc('generatetoaddress', 1, payoutAddress);
  relay = await startRelay(parseRelayConfig(configFor(node)));
  await waitFor('relay upstream live', () =>
    Promise.resolve(relay.stratifier.upstreamState === 'live'),
  );
}, 90_000);

afterAll(async () => {
  await relay?.close();
  await net?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('relay in solo mode on litecoind regtest', () => {
  it('a circuit client mines shares that become blocks the node accepts', async () => {
    const client = await CircuitClient.connect(`${relay.url.replace('http', 'ws')}/v1/circuit`);
    try {
      let job: JobParams | null = null;
      client.on('job', (j) => {
        job = j;
      });
      const session = await client.request('mining.register', { agent: 'e2e', mode: 'tickets' });
      expect(session.algorithm).toBe('scrypt');
      // Client difficulty never exceeds the upstream (here: network) difficulty.
      const network = z.number().parse(await node.rpc('getdifficulty')) * 65536;
      expect(session.difficulty).toBeLessThanOrEqual(network * 1.000001);

      const blocks: string[] = [];
      const reported: string[] = [];
      relay.stratifier.on(
        'block',
        ({ outcome, hash }: { outcome: SubmitOutcome | null; hash: string }) => {
          if (outcome?.accepted && outcome.block) blocks.push(outcome.block);
          reported.push(hash);
        },
      );
      const startHeight = z.number().parse(await node.rpc('getblockcount'));
      for (let i = 0; i < 3; i++) {
        await waitFor('a job', () => Promise.resolve(job !== null));
        const current = job as unknown as JobParams;
        job = null;
        const share = await grindShare(
          'scrypt',
          current,
          session.extranonce1,
          session.extranonce2Size,
          session.difficulty,
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
      expect(await node.rpc('getblockcount')).toBe(startHeight + 3);
      // The second node follows: these are real blocks on the network.
      const other = net.nodes[1] as RegtestNode;
      await waitFor(
        'node 2 synced',
        async () => (await other.rpc('getbestblockhash')) === blocks[2],
      );

      // The block ids the relay reports (status, dashboard) are the node's, not scrypt hashes.
      expect(reported).toEqual(blocks);
      const status = (await (await fetch(`${relay.url}/v1/status`)).json()) as {
        blocks: { accepted: number; recent: { hash: string }[] };
        shares: { accepted: number };
        upstream: { state: string };
      };
      expect(status.upstream.state).toBe('live');
      expect(status.blocks.accepted).toBe(3);
      expect(status.blocks.recent.map((b) => b.hash).sort()).toEqual([...blocks].sort());
      expect(status.shares.accepted).toBe(3);
    } finally {
      await client.close();
    }
  }, 60_000);

  it('`powbridge relay --config` starts, serves /healthz, and stops on SIGTERM', async () => {
    const file = join(dir, 'relay.toml');
    const config = configFor(net.nodes[1] as RegtestNode, '127.0.0.1:0');
    const node2 = config.source.node as Record<string, unknown>;
    const lines = [
      '[relay]',
      `dataDir = "${join(dir, 'cli-data')}"`,
      '[log]',
      'level = "info"',
      '[source]',
      'type = "node"',
      '[source.node]',
      ...Object.entries(node2).map(([k, v]) => `${k} = ${JSON.stringify(v)}`),
    ];
    writeFileSync(file, lines.join('\n'));
    const child = spawn(
      process.execPath,
      [BIN, 'relay', '--config', file, '--listen', '127.0.0.1:0'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    try {
      await waitFor(
        'relay listening',
        () => Promise.resolve(/listening on (http:\S+)/.test(stderr)),
        20_000,
      );
      const url = /listening on (http:\S+)/.exec(stderr)?.[1] as string;
      const health = await fetch(`${url}/healthz`);
      expect(health.status).toBe(200);
      // Secrets never reach the log.
      const password = node2.rpcPassword;
      if (typeof password === 'string') expect(stdout + stderr).not.toContain(password);
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  }, 40_000);

  it('refuses a bad config with the key and the problem', async () => {
    const file = join(dir, 'bad.toml');
    writeFileSync(file, '[source]\ntype = "node"\n[source.node]\nrpcUrl = "http://127.0.0.1:1"\n');
    const child = spawn(process.execPath, [BIN, 'relay', '--config', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(2);
    expect(stderr).toMatch(/source\.node\.payoutAddress: required/);
  });

  it('earns a ticket with real shares and redeems it over a fresh circuit, once', async () => {
    const wsUrl = `${relay.url.replace('http', 'ws')}/v1/circuit`;
    // The client pins the relay identity (out of band in real use) and checks the descriptor.
    const descriptor = (await (await fetch(`${relay.url}/v1/descriptor`)).json()) as {
      identity: string;
    };
    const pin = new KeyPin(relay.tickets.keys.identity.publicKeyHex);
    pin.accept(descriptor, Date.now() / 1000);

    const miner = await CircuitClient.connect(wsUrl);
    try {
      let job: JobParams | null = null;
      miner.on('job', (j) => {
        job = j;
      });
      const session = await miner.request('mining.register', { agent: 'e2e', mode: 'tickets' });
      const terms = session.ticket;
      if (!terms) throw new Error('no ticket terms');
      // The default scheme: partially blind RSA, v2 tickets (docs/design.md §6.5).
      expect(terms.scheme).toBe(RSA_SCHEME);
      pin.check({
        keyId: terms.keyId,
        publicKey: terms.publicKey,
        day: terms.day,
        scheme: terms.scheme,
      });
      let credit = 0;
      for (let i = 0; credit < terms.price; i++) {
        await waitFor('a job', () => Promise.resolve(job !== null));
        const current = job as unknown as JobParams;
        const share = await grindShare(
          'scrypt',
          current,
          session.extranonce1,
          session.extranonce2Size,
          session.difficulty,
          {
            extranonce2: 100 + i,
          },
        );
        ({ credit } = await miner.request('mining.submit', {
          jobId: share.jobId,
          extranonce2: share.extranonce2,
          ntime: share.ntime,
          nonce: share.nonce,
        }));
        job = null;
      }
      const issued = await new TicketClient(terms).obtain(miner);
      expect(Buffer.from(issued.ticket, 'base64url')[0]).toBe(TICKET_V2_VERSION);

      // Redeem over a new circuit that never registered: nothing links it to the miner.
      const fresh = await CircuitClient.connect(wsUrl);
      try {
        // A tampered copy gets 30 and spends nothing (once the serial is spent, the cheap
        // spent check answers 32 before any signature work).
        const bytes = Buffer.from(issued.ticket, 'base64url');
        bytes[200] = (bytes[200] ?? 0) ^ 1;
        await expect(
          fresh.request('ticket.redeem', { ticket: bytes.toString('base64url') }),
        ).rejects.toMatchObject({ code: 30 });
        const grant = await fresh.request('ticket.redeem', { ticket: issued.ticket });
        expect(grant.class).toBe('paid');
        expect(grant.expiresAt).toBeGreaterThan(Date.now() / 1000 + 500);
        await expect(
          fresh.request('ticket.redeem', { ticket: issued.ticket }),
        ).rejects.toMatchObject({
          code: 32,
        });
        // A ticket signed for a day outside the key's days gets 31.
        const issuing = relay.tickets.keys.issuingRsaKey(terms.day);
        if (!issuing) throw new Error('no RSA key issuing today');
        const stale = issueTicketV2(issuing.key, issuing.notBeforeDay - 2);
        await expect(fresh.request('ticket.redeem', { ticket: stale.text })).rejects.toMatchObject({
          code: 31,
        });
      } finally {
        await fresh.close();
      }
    } finally {
      await miner.close();
    }
  }, 60_000);
});
