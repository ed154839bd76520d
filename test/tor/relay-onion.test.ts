import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { loadRelayConfig, parseRelayConfig } from '../../src/relay/config.js';
import { type Relay, startRelay } from '../../src/relay/relay.js';
import { verifyDescriptor } from '../../src/tickets/descriptor.js';
import { torrcSnippet } from '../../src/tor/torrc-snippet.js';
import { MIN_DIFFICULTY } from '../../src/work/target.js';
import { runCli } from '../helpers/cli.js';
import { freePort } from '../helpers/litecoind.js';
import { ManualSource } from '../helpers/manual-source.js';
import { FakeTorControl, type FakeTorOptions, TOR_ONION_VECTORS } from './fake-tor-control.js';

/**
 * The relay with tor.control set, against the scripted control port: the onion service is
 * made after the listener, listed in the signed descriptor, and removed first on close.
 */

const root = mkdtempSync(join(tmpdir(), 'powbridge-relay-onion-'));
const cookie = randomBytes(32);
const cookieFile = join(root, 'control_auth_cookie');
writeFileSync(cookieFile, cookie);
let dirs = 0;

const fakes: FakeTorControl[] = [];
const relays: Relay[] = [];
afterEach(async () => {
  for (const r of relays.splice(0)) await r.close();
  for (const f of fakes.splice(0)) await f.close();
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

function config(control: string, listen = '127.0.0.1:0') {
  return parseRelayConfig({
    relay: { listen, dataDir: join(root, `relay-${dirs++}`) },
    source: {
      type: 'node',
      algorithm: 'sha256d',
      node: { rpcUrl: 'http://127.0.0.1:1', rpcUser: 'u', rpcPassword: 'p', payoutAddress: 'a' },
    },
    difficulty: { initial: MIN_DIFFICULTY, min: MIN_DIFFICULTY, ticketDifficulty: MIN_DIFFICULTY },
    tor: { control },
  });
}

async function fakeTor(options: FakeTorOptions = {}) {
  const fake = await FakeTorControl.start({ cookie, cookieFile, ...options });
  fakes.push(fake);
  return fake;
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

describe('relay with tor.control', () => {
  it('publishes the onion service to its listener and lists it in the signed descriptor', async () => {
    const fake = await fakeTor();
    const relay = await startRelay(config(`127.0.0.1:${fake.port}`), {
      source: new ManualSource('sha256d'),
    });
    relays.push(relay);
    const port = Number(new URL(relay.url).port);
    const id = TOR_ONION_VECTORS[0].serviceId;
    expect(relay.onion?.hostname).toBe(`${id}.onion`);
    expect(fake.onions.get(id)).toEqual([`80,127.0.0.1:${port}`]);

    const served: unknown = await (await fetch(`${relay.url}/v1/descriptor`)).json();
    const descriptor = verifyDescriptor(served, relay.tickets.keys.identity.publicKeyHex);
    expect(descriptor.endpoints).toMatchObject({
      circuit: '/v1/circuit',
      onion: `ws://${id}.onion/v1/circuit`,
    });

    await relay.close();
    relays.splice(0);
    expect(fake.received).toContain(`DEL_ONION ${id}`);
    expect(fake.onions.size).toBe(0);
  });

  it('a refused authentication fails the start and leaves nothing listening', async () => {
    const fake = await fakeTor({ methods: ['HASHEDPASSWORD'], password: 'right' });
    const port = await freePort();
    await expect(
      startRelay(config(`127.0.0.1:${fake.port}`, `127.0.0.1:${port}`), {
        source: new ManualSource('sha256d'),
        torPassword: 'wrong',
      }),
    ).rejects.toThrow(/Tor control port 127\.0\.0\.1:\d+: Tor refused authentication/);
    expect(await portIsFree(port)).toBe(true);
  });
});

describe('[tor] config section', () => {
  it('defaults: no control port, virtual port 80', () => {
    const c = config('127.0.0.1:9051');
    expect(c.tor).toEqual({
      control: '127.0.0.1:9051',
      virtualPort: 80,
      hiddenServiceDir: '/var/lib/tor/powbridge',
    });
  });

  it('refuses a bad control address and a password in the file', () => {
    expect(() => config('localhost')).toThrow(/tor\.control: expected host:port/);
    expect(() =>
      parseRelayConfig({
        source: {
          type: 'node',
          node: { rpcUrl: 'http://x:1', rpcCookieFile: 'c', payoutAddress: 'a' },
        },
        tor: { password: 'secret' },
      }),
    ).toThrow(/tor: unknown key password/);
  });

  it('resolves passwordFile and cookieFile against the config file', () => {
    const file = join(root, 'relay.toml');
    writeFileSync(
      file,
      [
        '[source]',
        'type = "node"',
        '[source.node]',
        'rpcUrl = "http://127.0.0.1:9332"',
        'rpcCookieFile = "c"',
        'payoutAddress = "a"',
        '[tor]',
        'control = "127.0.0.1:9051"',
        'passwordFile = "secrets/tor-password"',
        'cookieFile = "tor-cookie"',
        '',
      ].join('\n'),
    );
    const c = loadRelayConfig(file);
    expect(c.tor.passwordFile).toBe(join(root, 'secrets', 'tor-password'));
    expect(c.tor.cookieFile).toBe(join(root, 'tor-cookie'));
  });
});

describe('torrc snippet', () => {
  it('HiddenServiceDir, version 3 and the port mapping', () => {
    expect(
      torrcSnippet({
        hiddenServiceDir: '/var/lib/tor/powbridge/',
        virtualPort: 80,
        target: { host: '127.0.0.1', port: 8640 },
      }),
    ).toBe(
      [
        '# powbridge relay onion service: add to torrc (Debian: /etc/tor/torrc), then reload Tor',
        'HiddenServiceDir /var/lib/tor/powbridge/',
        'HiddenServiceVersion 3',
        'HiddenServicePort 80 127.0.0.1:8640',
        '# The onion address is then in /var/lib/tor/powbridge/hostname; clients mine with',
        '#   powbridge mine --proxy socks5h://127.0.0.1:9050 --relay ws://<address>/v1/circuit',
        '',
      ].join('\n'),
    );
  });

  it('refuses paths torrc would misread', () => {
    for (const dir of ['relative/dir', '/with space', '/a#b', '/q"uote']) {
      expect(() =>
        torrcSnippet({ hiddenServiceDir: dir, virtualPort: 80, target: { host: '::', port: 1 } }),
      ).toThrow(/hiddenServiceDir/);
    }
  });
});

describe('powbridge relay CLI', () => {
  const relayToml = (extra: string[] = []) => {
    const file = join(root, `cli-${dirs++}.toml`);
    writeFileSync(
      file,
      [
        '[relay]',
        'listen = "127.0.0.1:8641"',
        `dataDir = "${join(root, `cli-data-${dirs}`)}"`,
        '[log]',
        'level = "silent"',
        '[source]',
        'type = "node"',
        '[source.node]',
        'rpcUrl = "http://127.0.0.1:1"',
        'rpcUser = "u"',
        'rpcPassword = "p"',
        'payoutAddress = "a"',
        ...extra,
        '',
      ].join('\n'),
    );
    return file;
  };

  it('--print-torrc prints the snippet for relay.listen and starts nothing', async () => {
    const result = await runCli(['relay', '--config', relayToml(), '--print-torrc']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('HiddenServicePort 80 127.0.0.1:8641\n');
    expect(result.stdout).toContain('HiddenServiceDir /var/lib/tor/powbridge/\n');
  });

  it('--tor-control with a refused password exits 2 with a clear message', async () => {
    const fake = await fakeTor({ methods: ['HASHEDPASSWORD'], password: 'right' });
    const passwordFile = join(root, 'cli-password');
    writeFileSync(passwordFile, 'wrong\n', { mode: 0o600 });
    const result = await runCli([
      'relay',
      '--config',
      relayToml(['[tor]', 'virtualPort = 80']),
      '--listen',
      '127.0.0.1:0',
      '--tor-control',
      `127.0.0.1:${fake.port}`,
      '--tor-password-file',
      passwordFile,
    ]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      /^powbridge relay: Tor control port 127\.0\.0\.1:\d+: Tor refused authentication: .*515/,
    );
    expect(result.stderr).not.toContain('wrong');
  });
});
