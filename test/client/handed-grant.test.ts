import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { circuitUrl } from '../../src/client/redeem.js';
import {
  GrantKeeper,
  type SocksFront,
  startSocksFront,
  walletGrants,
  walletRedeemer,
} from '../../src/client/socks-front.js';
import { Wallet } from '../../src/client/wallet.js';
import type { Relay } from '../../src/relay/relay.js';
import { utcDay } from '../../src/tickets/keyring.js';
import { runCli } from '../helpers/cli.js';
import { startTestRelay } from '../helpers/test-relay.js';
import { issueTicketV2 } from '../helpers/ticket-v2.js';

/**
 * `powbridge tickets redeem --for-socks` hands its grant to the SOCKS front of
 * `powbridge mine --socks-listen` through the wallet: the front (a GrantKeeper wired as
 * MineApp wires it) uses that grant before spending a ticket of its own, and forgets it once
 * the relay refuses it.
 */

const dir = mkdtempSync(join(tmpdir(), 'powbridge-handed-grant-'));
const now = () => Date.now() / 1000;
let relay: Relay;
let echo: Server;
let echoPort: number;
const closers: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  echo = createServer((socket) => {
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
  echoPort = (echo.address() as { port: number }).port;
  ({ relay } = await startTestRelay({
    dataDir: join(dir, 'relay'),
    tunnel: { ports: [echoPort], allowCidrs: ['127.0.0.1/32'] },
  }));
}, 30_000);

afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await relay?.close();
  await new Promise<void>((resolve) => echo.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

function fillWallet(file: string, tickets: number): void {
  const day = utcDay(now());
  const issuing = relay.tickets.keys.issuingRsaKey(day);
  if (!issuing) throw new Error('no RSA issuing key');
  const keyId = Buffer.from(issuing.key.keyId).toString('hex');
  const wallet = Wallet.open(file);
  for (let i = 0; i < tickets; i++) {
    wallet.add(
      circuitUrl(relay.url),
      { ticket: issueTicketV2(issuing.key, day).text, keyId, day },
      now(),
    );
  }
  wallet.close();
}

/** The SOCKS front as `powbridge mine --socks-listen` builds it on `wallet`. */
async function mineFront(
  wallet: Wallet,
  autoRedeem: boolean,
): Promise<{ front: SocksFront; keeper: GrantKeeper }> {
  const relayUrl = circuitUrl(relay.url);
  const keeper = new GrantKeeper({
    redeem: walletRedeemer(wallet, { relayUrl, now }),
    handed: walletGrants(wallet, relayUrl),
    autoRedeem,
  });
  const front = await startSocksFront({
    host: '127.0.0.1',
    port: 0,
    relayUrl: relay.url,
    grant: keeper,
  });
  closers.push(
    () => keeper.close(),
    () => front.close(),
  );
  return { front, keeper };
}

/** Bytes each tunnel class of the relay has sent, from its status. */
async function bytesByClass(): Promise<Map<string, number>> {
  const status = (await (await fetch(`${relay.url}/v1/status`)).json()) as {
    qos: { classes: { name: string; bytesSent: number }[] };
  };
  return new Map(status.qos.classes.map((c) => [c.name, c.bytesSent]));
}

/** One SOCKS5 CONNECT to the echo server, `size` bytes there and back; the reply code. */
async function echoThrough(front: SocksFront, size: number): Promise<number> {
  const socket: Socket = connect(front.address.port, '127.0.0.1');
  socket.on('error', () => {});
  let got = Buffer.alloc(0);
  const waitFor = (n: number) =>
    new Promise<Buffer>((resolve, reject) => {
      const check = () => {
        if (got.length >= n) {
          socket.off('data', onData);
          const out = got.subarray(0, n);
          got = got.subarray(n);
          resolve(out);
        }
      };
      const onData = (chunk: Buffer) => {
        got = Buffer.concat([got, chunk]);
        check();
      };
      socket.on('data', onData);
      socket.once('close', () => reject(new Error(`closed after ${got.length} of ${n} bytes`)));
      check();
    });
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  socket.write(Buffer.from([5, 1, 0]));
  await waitFor(2);
  socket.write(Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, echoPort >> 8, echoPort & 0xff]));
  const code = (await waitFor(10))[1] ?? -1;
  if (code === 0) {
    socket.write(Buffer.alloc(size, 0x5a));
    await waitFor(size);
  }
  socket.destroy();
  return code;
}

describe('a grant kept by `tickets redeem --for-socks`', () => {
  it('carries the SOCKS front of `powbridge mine --no-auto-redeem` in the paid class, no ticket of its own spent', async () => {
    const file = join(dir, 'wallet-a.sqlite');
    fillWallet(file, 2);
    const redeemed = await runCli([
      'tickets',
      'redeem',
      '--relay',
      relay.url,
      '--wallet',
      file,
      '--for-socks',
    ]);
    expect(redeemed.stderr).toBe('');
    expect(redeemed.code).toBe(0);

    const wallet = Wallet.open(file);
    closers.push(() => wallet.close());
    const kept = wallet.grantFor(circuitUrl(relay.url), now());
    if (!kept) throw new Error('no grant kept');
    const { front, keeper } = await mineFront(wallet, false);
    const before = await bytesByClass();
    expect(await echoThrough(front, 64 * 1024)).toBe(0);
    const after = await bytesByClass();
    // One ticket in the grant: the default mapping puts it in group4; both ways, all of it.
    expect((after.get('group4') ?? 0) - (before.get('group4') ?? 0)).toBe(2 * 64 * 1024);
    expect(keeper.current()).toBe(kept.token);
    expect(keeper.redeems).toBe(0);
    expect(wallet.counts()).toMatchObject({ unspent: 1, spent: 1 });
  }, 60_000);

  it('goes before a ticket of its own with auto-redeem; one the relay refuses is forgotten', async () => {
    const file = join(dir, 'wallet-b.sqlite');
    fillWallet(file, 1);
    const wallet = Wallet.open(file);
    closers.push(() => wallet.close());
    const relayUrl = circuitUrl(relay.url);
    // A token the relay never issued, as if kept before the relay lost its grants.
    wallet.keepGrant(relayUrl, { token: 'C'.repeat(43), expiresAt: now() + 600 }, now());
    const { front, keeper } = await mineFront(wallet, true);
    expect(await echoThrough(front, 1024)).toBe(0);
    // Refused (401): the stream went on in the free class and the wallet forgot the grant.
    expect(wallet.grantFor(relayUrl, now())).toBeUndefined();
    await keeper.settled();
    // With nothing handed over any more, the keeper spends the wallet's own ticket.
    expect(await echoThrough(front, 1024)).toBe(0);
    await keeper.settled();
    expect(keeper.redeems).toBeGreaterThanOrEqual(1);
    expect(wallet.counts()).toMatchObject({ unspent: 0, spent: 1 });
    expect(keeper.current()).not.toBeNull();
  }, 60_000);
});
