import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, runCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/litecoind.js';
import { startTestRelay } from '../helpers/test-relay.js';
import { Wallet } from '../../src/client/wallet.js';

/**
 * `powbridge mine` errors as a user meets them, through the built CLI (`npm run build`
 * first): one plain line each, exit code 2 where nothing can change by retrying.
 */

const dir = mkdtempSync(join(tmpdir(), 'powbridge-mine-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const wallet = () => ['--wallet', join(dir, 'wallet.sqlite')];

/** The lines of `text`, without the empty one after the last newline. */
const lines = (text: string) => text.split('\n').filter((l) => l !== '');

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('powbridge mine: a relay it must not mine for', () => {
  it('a wrong --relay-identity: one line (expected, offered, what to do), exit 2, no share sent', async () => {
    const { relay } = await startTestRelay({ dataDir: join(dir, 'relay') });
    try {
      let shares = 0;
      relay.stratifier.on('share', () => (shares += 1));
      const wrong = 'ab'.repeat(32);
      const offered = relay.tickets.keys.identity.publicKeyHex;
      const result = await runCli([
        'mine',
        '--relay',
        `${relay.url.replace('http', 'ws')}/v1/circuit`,
        '--relay-identity',
        wrong,
        ...wallet(),
      ]);
      expect(result.code).toBe(2);
      const said = lines(result.stderr);
      expect(said).toHaveLength(1);
      expect(said[0]).toMatch(
        /^powbridge mine: the relay at ws:\/\/127\.0\.0\.1:\d+\/v1\/circuit /,
      );
      expect(said[0]).toContain(`expected identity ${wrong}`);
      expect(said[0]).toContain(`its descriptor is signed by ${offered}`);
      expect(said[0]).toContain('check the identity with the relay');
      expect(result.stdout).toBe('');
      expect(shares).toBe(0);
      expect(relay.stats.snapshot().shares.accepted).toBe(0);
    } finally {
      await relay.close();
    }
  }, 30_000);

  it('a wrong path (HTTP 404): names the circuit URL, exit 2', async () => {
    const { relay } = await startTestRelay({ dataDir: join(dir, 'relay-404') });
    try {
      const base = relay.url.replace('http', 'ws');
      const result = await runCli(['mine', '--relay', `${base}/v1/circiut`, ...wallet()]);
      expect(result.code).toBe(2);
      expect(lines(result.stderr)).toEqual([
        `powbridge mine: no circuit endpoint at ${base}/v1/circiut (HTTP 404); ` +
          `the circuit URL ends in /v1/circuit: try ${base}/v1/circuit`,
      ]);
    } finally {
      await relay.close();
    }
  }, 30_000);

  it('a bare host:port: suggests the circuit URL, exit 2', async () => {
    const result = await runCli(['mine', '--relay', '127.0.0.1:8640', ...wallet()]);
    expect(result.code).toBe(2);
    expect(lines(result.stderr)).toEqual([
      'powbridge mine: --relay: 127.0.0.1:8640 is not a URL; did you mean ' +
        'ws://127.0.0.1:8640/v1/circuit? (see powbridge mine --help)',
    ]);
  });
});

describe('powbridge mine: a local port it cannot open', () => {
  it('--socks-listen on a port in use: one line naming the flag and why, exit 2', async () => {
    const { relay } = await startTestRelay({ dataDir: join(dir, 'relay-busy-port') });
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const { port } = taken.address() as { port: number };
    try {
      const result = await runCli([
        'mine',
        '--relay',
        `${relay.url.replace('http', 'ws')}/v1/circuit`,
        '--threads',
        '0',
        '--socks-listen',
        `127.0.0.1:${port}`,
        ...wallet(),
      ]);
      expect(result.code).toBe(2);
      expect(lines(result.stderr)).toEqual([
        `powbridge mine: --socks-listen 127.0.0.1:${port}: cannot listen: the port is in use (EADDRINUSE)`,
      ]);
    } finally {
      await new Promise<void>((resolve) => taken.close(() => resolve()));
      await relay.close();
    }
  }, 30_000);
});

describe('powbridge mine: an unreachable relay', () => {
  it('says so in one plain line (not a log line per retry) and keeps retrying', async () => {
    const url = `ws://127.0.0.1:${await closedPort()}/v1/circuit`;
    const child = spawn(process.execPath, [BIN, 'mine', '--relay', url, ...wallet()], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.resume();
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    try {
      await waitFor('the message', () => Promise.resolve(stderr.includes('\n')), 15_000);
      // Two more retries at least (backoff from 1 s): still the one line.
      await new Promise((resolve) => setTimeout(resolve, 3_500));
    } finally {
      child.kill('SIGINT');
    }
    expect(await exited).toBe(0);
    const said = lines(stderr);
    expect(said).toHaveLength(1);
    expect(said[0]).toMatch(
      new RegExp(
        `^powbridge mine: cannot reach ${url.replace(/[./]/g, '\\$&')}: connection refused; ` +
          `is the relay running\\? \\(retrying in \\d+ s\\)$`,
      ),
    );
  }, 30_000);
});

/** A spawned `powbridge mine`: its output so far, its exit. */
function spawnMine(args: string[]) {
  const child = spawn(process.execPath, [BIN, 'mine', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  return { child, exited, stdout: () => stdout, stderr: () => stderr };
}

/** The summary's lines, from its first ("powbridge mine: stopped …") on. */
function summaryOf(stdout: string): string[] {
  const at = stdout.indexOf('powbridge mine: stopped');
  return at < 0 ? [] : lines(stdout.slice(at));
}

describe('powbridge mine: stopped by a signal, it sums the run up', () => {
  it('Ctrl-C after the first ticket: time, hashes, shares, credit and tickets as the relay saw them; exit 0', async () => {
    const price = 2;
    // A few shares a second (2^18 hashes each): at the floor every hash is a share, which
    // outruns the relay's request limit, and a closed circuit takes its credit with it. The
    // upstream's difficulty is above it, or clients would mine at the upstream's.
    const ticketDifficulty = 2 ** -14;
    const { relay } = await startTestRelay({
      dataDir: join(dir, 'relay-summary'),
      price,
      clientDifficulty: ticketDifficulty,
      ticketDifficulty,
      upstreamDifficulty: 1,
    });
    const walletFile = join(dir, 'summary-wallet.sqlite');
    // What the relay saw: every share of this relay is the miner's.
    const seen = { accepted: 0, rejected: 0, credit: 0 };
    relay.stratifier.on('share', ({ code, difficulty }) => {
      if (code !== null) seen.rejected += 1;
      else {
        seen.accepted += 1;
        seen.credit += difficulty / ticketDifficulty;
      }
    });
    const run = spawnMine([
      ...['--relay', `${relay.url.replace('http', 'ws')}/v1/circuit`, '--wallet', walletFile],
      ...['--status-interval', '3600'],
    ]);
    try {
      await waitFor(
        'the first ticket',
        () => Promise.resolve(run.stdout().includes('ticket stored in the wallet')),
        60_000,
      );
      run.child.kill('SIGINT');
      expect(await run.exited).toBe(0);
    } finally {
      run.child.kill('SIGKILL');
      await relay.close();
    }
    expect(run.stderr()).toBe('');
    const summary = summaryOf(run.stdout());
    expect(summary).toHaveLength(5);
    const [head, hashes, shares, credit, tickets] = summary;
    expect(head).toMatch(/^powbridge mine: stopped \(Ctrl-C\) after \d+\.\d s$/);
    const hashed = /^ {2}hashes: {2}([\d,]+) in all, [\d.]+ [kM]?H\/s on average$/.exec(
      hashes ?? '',
    );
    expect(hashed, hashes).not.toBeNull();
    expect(Number(hashed?.[1]?.replace(/,/g, ''))).toBeGreaterThan(0);
    // Rejections come with their reasons, and found shares whose job was replaced before
    // they went out (a retarget resends the job) never reached the relay: both only if any.
    expect(shares).toMatch(
      new RegExp(
        `^ {2}shares: {2}${seen.accepted} accepted, ${seen.rejected} rejected` +
          '( \\([^)]+\\))?(, \\d+ not sent \\(their job was replaced first\\))?$',
      ),
    );

    const issued = relay.tickets.issued();
    expect(issued).toBeGreaterThanOrEqual(1);
    const wallet = Wallet.open(walletFile);
    const counts = wallet.counts();
    wallet.close();
    expect(counts).toEqual({ unspent: issued, spent: 0, expired: 0 });
    expect(tickets).toBe(
      `  tickets: ${issued} earned, in ${walletFile} (${issued} unspent, 0 spent, 0 expired)`,
    );

    const account =
      /^ {2}credit: {2}([\d.]+) earned: ([\d.]+) paid for (\d+) tickets?, ([\d.]+) unspent \(gone with the circuit\)$/.exec(
        credit ?? '',
      );
    expect(account, credit).not.toBeNull();
    const [earned, paid, count, unspent] = (account ?? []).slice(1).map(Number);
    expect(count).toBe(issued);
    expect(paid).toBe(issued * price);
    expect(earned).toBeCloseTo((paid ?? 0) + (unspent ?? 0), 2);
    // The miner's view of its credit: what the relay reported after each share, less each
    // ticket's price once the ticket arrives. A share answered while a ticket was being issued
    // may already show that price taken off, and the miner takes it off again (never below
    // 0) until the next share: so the summary can end short of what the relay credited by up
    // to one price, never over it and never by more.
    const truth = Number(seen.credit.toFixed(2));
    expect(earned).toBeLessThanOrEqual(truth);
    expect(earned).toBeGreaterThanOrEqual(truth - price);
  }, 90_000);

  it('SIGTERM with nothing mined: the same summary, all zero, exit 0', async () => {
    const walletFile = join(dir, 'sigterm-wallet.sqlite');
    const run = spawnMine([
      ...['--relay', `ws://127.0.0.1:${await closedPort()}/v1/circuit`, '--wallet', walletFile],
    ]);
    try {
      await waitFor('the first retry', () => Promise.resolve(run.stderr().includes('\n')), 15_000);
      run.child.kill('SIGTERM');
      expect(await run.exited).toBe(0);
    } finally {
      run.child.kill('SIGKILL');
    }
    const summary = summaryOf(run.stdout());
    expect(summary[0]).toMatch(/^powbridge mine: stopped \(SIGTERM\) after \d+\.\d s$/);
    expect(summary.slice(1)).toEqual([
      '  hashes:  0 in all, 0 H/s on average',
      '  shares:  0 accepted, 0 rejected',
      '  credit:  0.00 earned: 0.00 paid for 0 tickets, 0.00 unspent (gone with the circuit)',
      `  tickets: 0 earned, in ${walletFile} (0 unspent, 0 spent, 0 expired)`,
    ]);
  }, 30_000);
});
