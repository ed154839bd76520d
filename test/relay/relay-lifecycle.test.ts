import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseRelayConfig } from '../../src/relay/config.js';
import { type Relay, startRelay } from '../../src/relay/relay.js';
import { MIN_DIFFICULTY } from '../../src/work/target.js';
import { freePort } from '../helpers/litecoind.js';
import { ManualSource } from '../helpers/manual-source.js';

/**
 * The composition root's one start and one stop: a start that fails after most parts exist
 * (here: the Stratum port is taken, so the last listener fails) stops them all again, so the
 * same data directory and HTTP port start cleanly right after; close() does the same.
 */

const dirs: string[] = [];
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function config(dataDir: string, listen: string, stratumListen: string) {
  return parseRelayConfig({
    relay: { listen, stratumListen, dataDir },
    source: {
      type: 'node',
      algorithm: 'sha256d',
      node: { rpcUrl: 'http://127.0.0.1:1', rpcUser: 'u', rpcPassword: 'p', payoutAddress: 'a' },
    },
    difficulty: { initial: MIN_DIFFICULTY, min: MIN_DIFFICULTY, ticketDifficulty: MIN_DIFFICULTY },
    peers: [
      {
        name: 'backup',
        url: 'http://127.0.0.1:1',
        identity: 'ab'.repeat(32),
      },
    ],
  });
}

async function occupy(port: number): Promise<Server> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  cleanup.push(() => new Promise((resolve) => server.close(() => resolve())));
  return server;
}

describe('relay start and stop', () => {
  it('a start that fails at the last listener leaves nothing open behind it', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'powbridge-lifecycle-'));
    dirs.push(dataDir);
    const listen = `127.0.0.1:${await freePort()}`;
    const taken = await freePort();
    await occupy(taken);
    const source = new ManualSource('sha256d');
    await expect(
      startRelay(config(dataDir, listen, `127.0.0.1:${taken}`), { source }),
    ).rejects.toThrow(/EADDRINUSE/);
    // The source it was handed was started, then stopped again.
    expect(source.running).toBe(false);

    // Same data directory (spent store, peer ledger, keys) and same HTTP port: all released.
    const second = new ManualSource('sha256d');
    const again = await startRelay(config(dataDir, listen, `127.0.0.1:${await freePort()}`), {
      source: second,
    });
    expect(second.running).toBe(true);
    let relay: Relay | null = again;
    cleanup.push(async () => relay?.close());
    expect(again.url).toBe(`http://${listen}`);
    expect((await fetch(`${again.url}/healthz`)).status).toBe(200);
    expect((await again.peering?.status())?.map((p) => p.name)).toEqual(['backup']);

    // close() runs the same teardown: the port is free for a plain listener afterwards.
    await again.close();
    relay = null;
    expect(second.running).toBe(false);
    const port = Number(listen.split(':')[1]);
    const probe = await occupy(port);
    expect(probe.listening).toBe(true);
  });
});
