import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { Wallet } from '../../src/client/wallet.js';
import type { Relay } from '../../src/relay/relay.js';
import { BIN, runCli } from '../helpers/cli.js';
import { type PeeredRelays, startPeeredRelays } from '../peers/peered-relays.js';

/**
 * Protocol 2 end to end, as a client meets it (issue 7): the real miner earns a ticket at R1,
 * R1 goes down, the client redeems that ticket at R1's backup R2 with the real CLI and gets
 * priority in R2's tunnel; R1 comes back, the spent sets converge and R2's payment request
 * for serving R1's ticket shows at R1.
 */

const dir = mkdtempSync(join(tmpdir(), 'powbridge-backup-e2e-'));
const wallet = join(dir, 'wallet.sqlite');
let pair: PeeredRelays;
let echo: Server;
let echoPort: number;
const children: ChildProcess[] = [];

const up = (relay: Relay | null): Relay => {
  if (!relay) throw new Error('relay not running');
  return relay;
};
const circuitOf = (port: number) => `ws://127.0.0.1:${port}/v1/circuit`;

async function until(what: string, check: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

beforeAll(async () => {
  echo = createServer((socket) => socket.pipe(socket));
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
  echoPort = (echo.address() as { port: number }).port;
  pair = await startPeeredRelays({
    paymentEvery: 1,
    tunnel: { ports: [echoPort], allowCidrs: ['127.0.0.1/32'] },
  });
  await pair.start(pair.a);
  await pair.start(pair.b);
}, 30_000);

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await pair?.close();
  await new Promise<void>((resolve) => echo.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

describe('backup relay end to end', () => {
  it('a ticket earned at R1 buys priority at R2 while R1 is down; both converge after', async () => {
    const { a, b } = pair;
    // R2 learns R1's keys from R1's signed descriptor (its sync loop does this on start).
    await up(b.relay).peering?.syncPeer('r1');
    const descriptor = (await up(a.relay).app.inject('/v1/descriptor')).json<{
      backupRelays: { identity: string; url: string }[];
    }>();
    expect(descriptor.backupRelays).toEqual([{ identity: b.identity, url: circuitOf(b.port) }]);

    // 1. The miner earns a ticket at R1.
    const miner = spawn(
      process.execPath,
      [
        BIN,
        'mine',
        '--relay',
        circuitOf(a.port),
        '--threads',
        '1',
        '--wallet',
        wallet,
        '--relay-identity',
        a.identity,
        '--no-auto-redeem',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(miner);
    let output = '';
    miner.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    miner.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    await until(
      'a ticket in the wallet',
      () => existsSync(wallet) && output.includes('ticket stored in the wallet'),
      60_000,
    );
    miner.kill('SIGINT');
    await new Promise((resolve) => miner.once('exit', resolve));
    const stored = Wallet.open(wallet);
    const earned = stored.list({ state: 'unspent' });
    stored.close();
    expect(earned.length).toBeGreaterThan(0);

    // 2. R1 goes down; the client redeems R1's ticket at R2.
    await pair.stop(a);
    const redeemed = await runCli([
      'tickets',
      'redeem',
      '--relay',
      circuitOf(a.port),
      '--at',
      circuitOf(b.port),
      '--wallet',
      wallet,
      '--show-token',
    ]);
    expect(redeemed.code, redeemed.stderr).toBe(0);
    const token = /token[:\s]+([A-Za-z0-9_-]{43})/.exec(redeemed.stdout)?.[1];
    expect(token, redeemed.stdout).toBeDefined();
    expect(await up(b.relay).peering?.ledger.balance('r1')).toMatchObject({
      served: 1,
      owedSync: 1,
    });

    // 3. With the grant, R2's tunnel carries the stream in a paid class.
    const ws = new WebSocket(`ws://127.0.0.1:${b.port}/v1/tunnel?to=127.0.0.1:${echoPort}`, {
      headers: { authorization: `Priority ${token}` },
    });
    const payload = Buffer.alloc(32 * 1024, 7);
    const back = await new Promise<number>((resolve, reject) => {
      let size = 0;
      ws.on('message', (data: Buffer) => {
        size += data.length;
        if (size >= payload.length) resolve(size);
      });
      ws.once('error', reject);
      ws.once('open', () => ws.send(payload));
    });
    ws.close();
    expect(back).toBe(payload.length);
    const status = (await up(b.relay).app.inject('/v1/status')).json<{
      qos: { classes: { name: string; bytesSent: number }[] };
    }>();
    const sent = (name: string) => status.qos.classes.find((c) => c.name === name)?.bytesSent ?? 0;
    // One ticket: the 1–3-ticket class (docs/design.md §8).
    expect(sent('group4')).toBeGreaterThanOrEqual(payload.length);
    expect(sent('free')).toBe(0);

    // 4. R1 returns: the spent sets converge and R1 sees R2's payment request.
    await pair.start(a);
    await up(a.relay).peering?.syncPeer('r2');
    await up(b.relay).peering?.syncPeer('r1');
    await up(a.relay).peering?.syncPeer('r2');
    const spentAt = async (relay: Relay) =>
      (await relay.tickets.store.since(0)).map((r) => Buffer.from(r.serial).toString('hex')).sort();
    expect(await spentAt(up(a.relay))).toEqual(await spentAt(up(b.relay)));
    expect(await spentAt(up(a.relay))).toHaveLength(1);
    const requests = (await up(a.relay).peering?.ledger.listRequestsIn('r2')) ?? [];
    expect(requests).toEqual([expect.objectContaining({ count: 1 })]);
    expect(await up(b.relay).peering?.ledger.balance('r1')).toMatchObject({
      owedSync: 0,
      billed: 1,
      conflicts: 0,
    });
    const peers = await runCli(['peers', 'status', '--config', pair.configFile(a), '--json']);
    expect(peers.code, peers.stderr).toBe(0);
    expect(peers.stdout).toContain('"weOwe":1');
  }, 120_000);
});
