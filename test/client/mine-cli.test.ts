import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, runCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/litecoind.js';
import { startTestRelay } from '../helpers/test-relay.js';

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
        'ws://127.0.0.1:8640/v1/circuit?',
    ]);
  });
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
