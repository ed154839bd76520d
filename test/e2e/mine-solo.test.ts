import { type ChildProcess, spawn } from 'node:child_process';
import {
  createServer as createHttpServer,
  get as httpGet,
  type Server as HttpServer,
} from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { SocksProxyAgent } from 'socks-proxy-agent';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Wallet } from '../../src/client/wallet.js';
import { parseRelayConfig } from '../../src/relay/config.js';
import { type Relay, startRelay } from '../../src/relay/relay.js';
import { BIN, runCli } from '../helpers/cli.js';
import {
  type RegtestNetwork,
  type RegtestNode,
  startRegtestNetwork,
  waitFor,
} from '../helpers/litecoind.js';

/**
 * `powbridge mine` as a user runs it: the real CLI with 2 threads against a relay in solo
 * mode on two litecoind regtest nodes, for a bounded time.
 */

let net: RegtestNetwork;
let node: RegtestNode;
let relay: Relay;
const dir = mkdtempSync(join(tmpdir(), 'powbridge-mine-e2e-'));
const children: ChildProcess[] = [];

interface Status {
  shares: { accepted: number };
  blocks: { accepted: number };
}

async function status(): Promise<Status> {
  return (await (await fetch(`${relay.url}/v1/status`)).json()) as Status;
}

/** Run `powbridge mine` until `done` holds (or the time is up), then SIGINT it. */
async function mine(args: string[], done: () => Promise<boolean>, seconds = 40) {
  const circuit = `${relay.url.replace('http', 'ws')}/v1/circuit`;
  const child = spawn(
    process.execPath,
    [BIN, 'mine', '--relay', circuit, '--threads', '2', '--status-interval', '2', ...args],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  await waitFor('mining progress', done, seconds * 1000).catch(() => undefined);
  child.kill('SIGINT');
  const code = await exited;
  return { code, stdout, stderr };
}

let web: HttpServer;
let webPort: number;

beforeAll(async () => {
  web = createHttpServer((_req, res) => res.end('hello through the tunnel'));
  await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
  webPort = (web.address() as { port: number }).port;
  net = await startRegtestNetwork([{ auth: 'password' }, { auth: 'cookie' }]);
  node = net.nodes[0] as RegtestNode;
  await node.rpc('createwallet', 'relay');
  const payoutAddress = z.string().parse(await node.walletRpc('relay', 'getnewaddress'));
  await node.rpc('generatetoaddress', 1, payoutAddress);
  const auth = node.auth as { user: string; password: string };
  relay = await startRelay(
    parseRelayConfig({
      relay: { listen: '127.0.0.1:0', dataDir: join(dir, 'relay') },
      source: {
        type: 'node',
        algorithm: 'scrypt',
        node: {
          rpcUrl: node.rpcUrl,
          rpcUser: auth.user,
          rpcPassword: auth.password,
          payoutAddress,
          pollIntervalSeconds: 1,
        },
      },
      // Regtest shares are worth ~32 credits at this ticket difficulty: a ticket every ~2 shares.
      difficulty: { ticketDifficulty: 2 ** -20 },
      tickets: { price: 64 },
      tunnel: { ports: [webPort], allowCidrs: ['127.0.0.1/32'] },
    }),
  );
  await waitFor('relay live', () => Promise.resolve(relay.stratifier.upstreamState === 'live'));
}, 90_000);

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await relay?.close();
  await net?.stop();
  await new Promise<void>((resolve) => web?.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

describe('powbridge mine against a relay in solo mode', () => {
  it('2 threads: shares accepted, blocks accepted by the node, tickets in the wallet and redeemable', async () => {
    const wallet = join(dir, 'wallet.sqlite');
    const startHeight = z.number().parse(await node.rpc('getblockcount'));
    const before = await status();
    const run = await mine(
      ['--wallet', wallet, '--relay-identity', relay.tickets.keys.identity.publicKeyHex],
      () => {
        if (!existsSync(wallet)) return Promise.resolve(false);
        const w = Wallet.open(wallet);
        try {
          return Promise.resolve(w.counts().unspent >= 3);
        } finally {
          w.close();
        }
      },
    );
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/mining \| .*H\/s \| shares \d+ ok/);
    expect(run.stdout).toContain('ticket stored in the wallet');
    const after = await status();
    expect(after.shares.accepted).toBeGreaterThan(before.shares.accepted);
    expect(after.blocks.accepted).toBeGreaterThan(before.blocks.accepted);
    expect(z.number().parse(await node.rpc('getblockcount'))).toBeGreaterThan(startHeight);
    expect(statSync(wallet).mode & 0o777).toBe(0o600);

    const w = Wallet.open(wallet);
    const unspent = w.counts().unspent;
    // The relay's default scheme: every ticket is a v2 (partially blind RSA) ticket.
    const versions = new Set(w.list().map((t) => Buffer.from(t.ticket, 'base64url')[0]));
    w.close();
    expect(unspent).toBeGreaterThanOrEqual(3);
    expect([...versions]).toEqual([2]);
    // A ticket from the wallet buys priority over a fresh circuit.
    const redeemed = await runCli([
      ...['tickets', 'redeem', '--relay', relay.url, '--wallet', wallet],
      '--for-socks',
    ]);
    expect(redeemed.stderr).toBe('');
    expect(redeemed.code).toBe(0);
    expect(redeemed.stdout).toMatch(/paid/);
    const w2 = Wallet.open(wallet);
    expect(w2.counts()).toMatchObject({ unspent: unspent - 1, spent: 1 });
    w2.close();
  }, 120_000);

  it('SIGKILL while tickets arrive loses no acknowledged ticket', async () => {
    const wallet = join(dir, 'kill-wallet.sqlite');
    const circuit = `${relay.url.replace('http', 'ws')}/v1/circuit`;
    let acknowledged = 0;
    for (let round = 0; round < 3; round++) {
      const child = spawn(
        process.execPath,
        [BIN, 'mine', '--relay', circuit, '--threads', '2', '--wallet', wallet],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      children.push(child);
      let acks = 0;
      child.stdout?.on('data', (d: Buffer) => {
        acks += d.toString().split('ticket stored in the wallet').length - 1;
      });
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      // Kill at a random moment once tickets are flowing.
      await waitFor('tickets flowing', () => Promise.resolve(acks >= 1), 40_000);
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 400)));
      child.kill('SIGKILL');
      await exited;
      acknowledged += acks;
    }
    const w = Wallet.open(wallet);
    const held = w.counts().unspent;
    w.close();
    // Every ticket the miner reported is in the wallet (a few more may have been stored
    // right before a kill, before their line was printed).
    expect(acknowledged).toBeGreaterThanOrEqual(3);
    expect(held).toBeGreaterThanOrEqual(acknowledged);
  }, 150_000);

  it('--socks-listen: an HTTP request through the SOCKS port rides the paid tunnel', async () => {
    const wallet = join(dir, 'socks-wallet.sqlite');
    const probe = createTcpServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const socksPort = (probe.address() as { port: number }).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const grantsBefore = relay.tickets.redeemer.grants.size;
    const circuit = `${relay.url.replace('http', 'ws')}/v1/circuit`;
    const child = spawn(
      process.execPath,
      [
        BIN,
        'mine',
        '--relay',
        circuit,
        '--threads',
        '1',
        '--wallet',
        wallet,
        '--socks-listen',
        `127.0.0.1:${socksPort}`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(child);
    try {
      // Mine until the wallet holds a ticket the SOCKS streams can redeem.
      await waitFor(
        'a ticket in the wallet',
        () => {
          if (!existsSync(wallet)) return Promise.resolve(false);
          const w = Wallet.open(wallet);
          try {
            return Promise.resolve(w.counts().unspent >= 1);
          } finally {
            w.close();
          }
        },
        40_000,
      );
      const agent = new SocksProxyAgent(`socks5h://127.0.0.1:${socksPort}`);
      const body = await new Promise<string>((resolve, reject) => {
        httpGet(`http://127.0.0.1:${webPort}/`, { agent }, (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve(text));
        }).on('error', reject);
      });
      expect(body).toBe('hello through the tunnel');
      // The stream was paid: a wallet ticket was redeemed for it.
      expect(relay.tickets.redeemer.grants.size).toBeGreaterThan(grantsBefore);
    } finally {
      child.kill('SIGINT');
    }
  }, 120_000);

  it('--donate: shares accepted, no tickets and no wallet', async () => {
    const wallet = join(dir, 'donor-wallet.sqlite');
    const before = await status();
    const run = await mine(
      ['--donate', '--wallet', wallet],
      async () => (await status()).shares.accepted >= before.shares.accepted + 3,
    );
    expect(run.code).toBe(0);
    expect((await status()).shares.accepted).toBeGreaterThanOrEqual(before.shares.accepted + 3);
    expect(run.stdout).not.toContain('ticket stored');
    expect(run.stdout).toMatch(/tickets 0/);
    expect(existsSync(wallet)).toBe(false);
  }, 120_000);

  it('refuses bad flags with exit code 2', async () => {
    for (const args of [
      ['--relay', 'http://x/v1/circuit'],
      ['--relay', 'ws://127.0.0.1:1/v1/circuit', '--threads', '-1'],
      ['--relay', 'ws://127.0.0.1:1/v1/circuit', '--proxy', 'http://127.0.0.1:9050', '--donate'],
      ['--relay', 'ws://127.0.0.1:1/v1/circuit', '--relay-identity', 'zz', '--donate'],
    ]) {
      const result = await runCli(['mine', ...args]);
      expect(result.code, args.join(' ')).not.toBe(0);
      expect(result.stderr).not.toBe('');
    }
  });
});
