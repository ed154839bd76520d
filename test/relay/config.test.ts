import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadRelayConfig, parseRelayConfig } from '../../src/relay/config.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const dir = mkdtempSync(join(tmpdir(), 'powbridge-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

const minimalNode = {
  source: {
    type: 'node',
    node: { rpcUrl: 'http://127.0.0.1:9332', rpcCookieFile: 'c', payoutAddress: 'addr' },
  },
};

describe('relay config', () => {
  it('the documented example is valid and has every section', () => {
    const config = loadRelayConfig(join(root, 'config', 'relay.example.toml'));
    expect(config.source.type).toBe('node');
    expect(config.relay.listen).toBe('127.0.0.1:8640');
    expect(config.difficulty.initial).toBe(2 ** -10);
    expect(config.limits.maxFrameBytes).toBe(16384);
    expect(config.verify.threads).toBe(1);
    expect(config.tickets).toEqual({
      price: 16,
      windowSeconds: 600,
      maxOpenSessions: 4,
      sessionTtlSeconds: 10,
      keyLifetimeDays: 30,
    });
  });

  it('fills defaults for everything but the source', () => {
    const config = parseRelayConfig(minimalNode);
    expect(config.relay).toEqual({ listen: '127.0.0.1:8640', dataDir: './powbridge-data' });
    expect(config.difficulty).toMatchObject({ targetShareSeconds: 15, ticketDifficulty: 1 });
    expect(config.source.node?.longPoll).toBe(true);
    expect(config.limits.maxClients).toBe(10_000);
  });

  const bad: [string, unknown, RegExp][] = [
    ['missing source', {}, /^source: required$/m],
    [
      'unknown source type',
      { source: { type: 'x' } },
      /source\.type: expected "node" \(solo\) or "pool"/,
    ],
    [
      'node without node section',
      { source: { type: 'node' } },
      /source\.node: required when type = "node"/,
    ],
    [
      'pool without pools',
      { source: { type: 'pool' } },
      /source\.pools: required when type = "pool"/,
    ],
    [
      'node without credentials',
      { source: { type: 'node', node: { rpcUrl: 'http://h:1', payoutAddress: 'a' } } },
      /source\.node: set rpcCookieFile, or rpcUser and rpcPassword/,
    ],
    [
      'bad pool url',
      { source: { type: 'pool', pools: [{ url: 'http://pool:3333', user: 'u' }] } },
      /source\.pools\.0\.url: expected stratum\+tcp/,
    ],
    [
      'bad listen',
      { ...minimalNode, relay: { listen: 'localhost' } },
      /relay\.listen: expected host:port/,
    ],
    [
      'port too high',
      { ...minimalNode, relay: { listen: '127.0.0.1:70000' } },
      /relay\.listen: port above 65535/,
    ],
    [
      'unknown key',
      { ...minimalNode, relay: { lisen: '127.0.0.1:1' } },
      /relay: unknown key lisen/,
    ],
    [
      'difficulty below floor',
      { ...minimalNode, difficulty: { initial: 0 } },
      /difficulty\.initial: must be a number >=/,
    ],
    [
      'min above max',
      { ...minimalNode, difficulty: { min: 4, max: 2 } },
      /difficulty: min must be <= max/,
    ],
    ['wrong type', { ...minimalNode, limits: { maxClients: 'many' } }, /limits\.maxClients:/],
    [
      'more than 8 signing sessions',
      { ...minimalNode, tickets: { maxOpenSessions: 9 } },
      /tickets\.maxOpenSessions: at most 8: more concurrent sessions open the ROS attack/,
    ],
  ];
  for (const [name, value, message] of bad) {
    it(`refuses ${name} with a message naming the key`, () => {
      expect(() => parseRelayConfig(value, 'relay.toml')).toThrow(ConfigError);
      expect(() => parseRelayConfig(value, 'relay.toml')).toThrow(message);
    });
  }

  it('names the file on unreadable files and TOML syntax errors', () => {
    expect(() => loadRelayConfig(join(dir, 'missing.toml'))).toThrow(
      /missing\.toml: cannot read \(ENOENT\)/,
    );
    const file = write('broken.toml', '[source\ntype = "node"');
    expect(() => loadRelayConfig(file)).toThrow(/broken\.toml: not valid TOML/);
  });

  it('resolves relative paths against the file and takes the RPC password from the environment', () => {
    const file = write(
      'relay.toml',
      [
        '[relay]',
        'dataDir = "data"',
        '[source]',
        'type = "node"',
        '[source.node]',
        'rpcUrl = "http://127.0.0.1:9332"',
        'rpcUser = "u"',
        'rpcPassword = "in-file"',
        'payoutAddress = "a"',
      ].join('\n'),
    );
    const config = loadRelayConfig(file, { POWBRIDGE_RPC_PASSWORD: 'from-env' });
    expect(config.relay.dataDir).toBe(join(dir, 'data'));
    expect(config.source.node?.rpcPassword).toBe('from-env');
  });

  it('takes the RPC password from the environment when the file has none', () => {
    const file = write(
      'no-password.toml',
      [
        '[source]',
        'type = "node"',
        '[source.node]',
        'rpcUrl = "http://127.0.0.1:9332"',
        'rpcUser = "u"',
        'payoutAddress = "a"',
      ].join('\n'),
    );
    expect(() => loadRelayConfig(file, {})).toThrow(/rpcCookieFile, or rpcUser and rpcPassword/);
    const config = loadRelayConfig(file, { POWBRIDGE_RPC_PASSWORD: 'from-env' });
    expect(config.source.node?.rpcPassword).toBe('from-env');
  });
});
