import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { HtbShaper } from '../../src/qos/htb-shaper.js';
import {
  ConfigError,
  historySamples,
  loadRelayConfig,
  parseRelayConfig,
} from '../../src/relay/config.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const dir = mkdtempSync(join(tmpdir(), 'powbridge-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

const root10 = { name: 'root', rate: '10mbit' };

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
    expect(config.difficulty.stratumInitial).toBe(16);
    expect(config.limits.maxFrameBytes).toBe(16384);
    expect(config.verify.threads).toBe(1);
    expect(config.tickets).toEqual({
      scheme: 'rsa',
      price: 16,
      windowSeconds: 600,
      maxOpenSessions: 4,
      sessionTtlSeconds: 10,
      keyLifetimeDays: 30,
      signerThreads: 2,
    });
  });

  it('tickets.scheme is "rsa" or "ao"; signerThreads 1..64', () => {
    expect(parseRelayConfig({ ...minimalNode, tickets: { scheme: 'ao' } }).tickets.scheme).toBe(
      'ao',
    );
    expect(() => parseRelayConfig({ ...minimalNode, tickets: { scheme: 'blind' } })).toThrow(
      /tickets\.scheme: expected "rsa" or "ao"/,
    );
    expect(() => parseRelayConfig({ ...minimalNode, tickets: { signerThreads: 0 } })).toThrow(
      /tickets\.signerThreads/,
    );
  });

  it('fills defaults for everything but the source', () => {
    const config = parseRelayConfig(minimalNode);
    // No [[tunnel.groups]]: the shaper's default, 1–3 tickets → group4, 4+ → group1.
    expect(config.tunnel.groups).toBeUndefined();
    expect(config.relay).toEqual({ listen: '127.0.0.1:8640', dataDir: './powbridge-data' });
    expect(config.difficulty).toMatchObject({ targetShareSeconds: 15, ticketDifficulty: 1 });
    // The Stratum port starts standard miners at their own difficulty.
    expect(config.difficulty.stratumInitial).toBe(16);
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
      'both ways of RPC auth',
      {
        source: {
          type: 'node',
          node: { rpcUrl: 'http://h:1', rpcCookieFile: 'c', rpcUser: 'u', payoutAddress: 'a' },
        },
      },
      /source\.node: set rpcCookieFile, or rpcUser and rpcPassword, not both/,
    ],
    [
      'a user without a password',
      {
        source: { type: 'node', node: { rpcUrl: 'http://h:1', rpcUser: 'u', payoutAddress: 'a' } },
      },
      /source\.node\.rpcPassword: required with rpcUser/,
    ],
    [
      'bad pool url',
      { source: { type: 'pool', pools: [{ url: 'http://pool:3333', user: 'u' }] } },
      /source\.pools\[0\]\.url: expected stratum\+tcp/,
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
      'Stratum port start below the floor',
      { ...minimalNode, difficulty: { stratumInitial: 2 ** -33 } },
      /difficulty\.stratumInitial: must be a number >= 2\.3283064365386963e-10/,
    ],
    [
      'Stratum port start not finite (TOML inf)',
      { ...minimalNode, difficulty: { stratumInitial: Number.POSITIVE_INFINITY } },
      /^difficulty\.stratumInitial: expected a finite number, got inf$/m,
    ],
    [
      'min above max',
      { ...minimalNode, difficulty: { min: 4, max: 2 } },
      /difficulty: min must be <= max/,
    ],
    [
      'wrong type',
      { ...minimalNode, limits: { maxClients: 'many' } },
      /^limits\.maxClients: expected a number, got string "many"$/m,
    ],
    [
      'more than 8 signing sessions',
      { ...minimalNode, tickets: { maxOpenSessions: 9 } },
      /tickets\.maxOpenSessions: at most 8: more concurrent sessions open the ROS attack/,
    ],
    [
      'a class ceil below its rate',
      {
        ...minimalNode,
        tunnel: {
          classes: [root10, { name: 'free', parent: 'root', rate: '4mbit', ceil: '2mbit' }],
        },
      },
      /tunnel\.classes\[1\]\.ceil \(name "free"\): ceil \(250000 B\/s\) below rate \(500000 B\/s\)/,
    ],
    [
      'a bad class rate',
      {
        ...minimalNode,
        tunnel: { classes: [root10, { name: 'a', parent: 'root', rate: 'fast' }] },
      },
      /tunnel\.classes\[1\]\.rate \(name "a"\): bad rate "fast"/,
    ],
    [
      'a class under an unknown parent',
      { ...minimalNode, tunnel: { classes: [root10, { name: 'a', parent: 'nope', rate: 1 }] } },
      /tunnel\.classes\[1\]\.parent \(name "a"\): unknown parent "nope"/,
    ],
    [
      'a class tree with two roots',
      { ...minimalNode, tunnel: { classes: [root10, { name: 'other', rate: 1 }] } },
      /tunnel\.classes: need exactly one root \(class without parent\), found 2/,
    ],
    [
      'ticket groups where more tickets buy a lower rate',
      {
        ...minimalNode,
        tunnel: {
          groups: [
            { minTickets: 1, leaf: 'group1' },
            { minTickets: 4, leaf: 'group4' },
          ],
        },
      },
      /^tunnel\.groups\[1\]\.leaf: "group4" \(4\+ tickets\) is guaranteed 187500 B\/s, less than "group1" \(1\+ tickets\)/m,
    ],
    [
      'ticket groups out of order',
      {
        ...minimalNode,
        tunnel: {
          groups: [
            { minTickets: 4, leaf: 'group1' },
            { minTickets: 1, leaf: 'group4' },
          ],
        },
      },
      /^tunnel\.groups\[1\]\.minTickets: 1 is not above the previous group's 4/m,
    ],
    [
      'a ticket group on a class that is not a paid leaf',
      { ...minimalNode, tunnel: { groups: [{ minTickets: 1, leaf: 'free' }] } },
      /^tunnel\.groups\[0\]\.leaf: "free" is the class of streams without a grant$/m,
    ],
    [
      'a peer listed twice',
      {
        ...minimalNode,
        peers: [
          { name: 'backup', url: 'http://127.0.0.1:1', identity: 'a'.repeat(64) },
          { name: 'backup', url: 'http://127.0.0.1:2', identity: 'b'.repeat(64) },
        ],
      },
      /peers\[1\]\.name \(name "backup"\): listed twice/,
    ],
  ];
  for (const [name, value, message] of bad) {
    it(`refuses ${name} with a message naming the key`, () => {
      expect(() => parseRelayConfig(value, 'relay.toml')).toThrow(ConfigError);
      expect(() => parseRelayConfig(value, 'relay.toml')).toThrow(message);
    });
  }

  it('names the file on unreadable files, and the line and column of a TOML syntax error', () => {
    expect(() => loadRelayConfig(join(dir, 'missing.toml'))).toThrow(
      /missing\.toml: no such file \(ENOENT\)$/,
    );
    expect(() => loadRelayConfig(dir)).toThrow(/: is a directory, not a config file \(EISDIR\)$/);
    const file = write('broken.toml', '[source\ntype = "node"');
    expect(() => loadRelayConfig(file)).toThrow(
      /broken\.toml:1:8: not valid TOML: illegal character in key$/,
    );
    const later = write(
      'later.toml',
      '[relay]\nlisten = "127.0.0.1:8640"\n\n[tickets]\nprice = sixteen\n',
    );
    expect(() => loadRelayConfig(later)).toThrow(/later\.toml:5:9: not valid TOML: invalid value$/);
  });

  it('keeps a broken line out of a TOML syntax error: it may hold a password', () => {
    const file = write('secret.toml', '[source.node]\nrpcPassword = "hunter2\n');
    let message = '';
    try {
      loadRelayConfig(file);
    } catch (err) {
      message = err instanceof ConfigError ? err.message : String(err);
    }
    // One line: the place and what is wrong, without smol-toml's excerpt of the file.
    expect(message).toMatch(/^[^\n]*secret\.toml:2:\d+: not valid TOML: [^\n]+$/);
    expect(message).not.toContain('hunter2');
  });

  it('says what a key takes and what the file has (issue 16)', () => {
    const file = write(
      'types.toml',
      [
        '[source]',
        'type = "node"',
        '[source.node]',
        'rpcUrl = "http://127.0.0.1:9332"',
        'rpcCookieFile = "c"',
        'payoutAddress = "a"',
        '[tickets]',
        'price = "sixteen"',
      ].join('\n'),
    );
    expect(() => loadRelayConfig(file)).toThrow(
      new ConfigError(`${file}:\ntickets.price: expected a number, got string "sixteen"`),
    );
    const cases: [unknown, string][] = [
      [{ tickets: { price: -1 } }, 'tickets.price: must be above 0, got -1'],
      [{ tickets: { price: Number.NaN } }, 'tickets.price: expected a finite number, got nan'],
      [
        { tickets: { windowSeconds: 1.5 } },
        'tickets.windowSeconds: expected a whole number, got number 1.5',
      ],
      [{ tickets: { windowSeconds: 5 } }, 'tickets.windowSeconds: must be at least 10, got 5'],
      [
        { tickets: { maxOpenSessions: 9 } },
        'tickets.maxOpenSessions: at most 8: more concurrent sessions open the ROS attack (docs/design.md §6.2)',
      ],
      [{ tickets: 5 }, 'tickets: expected a table, got number 5'],
      [{ relay: { listen: 8640 } }, 'relay.listen: expected a string, got number 8640'],
      // Not host:port at all: one problem, not also "port above 65535".
      [{ relay: { listen: 'nonsense' } }, 'relay.listen: expected host:port, e.g. 127.0.0.1:8640'],
      [{ relay: { dataDir: '' } }, 'relay.dataDir: must not be empty'],
      [
        { tunnel: { allowPrivate: 'yes' } },
        'tunnel.allowPrivate: expected true or false, got string "yes"',
      ],
      [{ tunnel: { ports: '443' } }, 'tunnel.ports: expected a list, got string "443"'],
      [
        { tunnel: { ports: ['443'] } },
        'tunnel.ports[0]: expected a port 1..65535 or a [from, to] range of them',
      ],
      [
        { tunnel: { allowCidrs: ['a'] } },
        'tunnel.allowCidrs[0]: must be at least 3 characters, got 1',
      ],
      [
        { log: { level: 'loud' } },
        'log.level: expected "fatal", "error", "warn", "info", "debug", "trace" or "silent", got string "loud"',
      ],
      [{ tickets: { scheme: 'blind' } }, 'tickets.scheme: expected "rsa" or "ao"'],
      [{ relay: { Listen: '127.0.0.1:1' } }, 'relay: unknown key Listen (did you mean listen?)'],
      [{ relay: { lisen: 1, frob: 2 } }, 'relay: unknown keys lisen (did you mean listen?), frob'],
      [{ relys: { listen: '127.0.0.1:1' } }, '(top level): unknown section [relys]'],
      [{ ticket: { price: 1 } }, '(top level): unknown section [ticket] (did you mean [tickets]?)'],
      [{ price: 1 }, '(top level): unknown key price'],
    ];
    for (const [value, line] of cases) {
      expect(() =>
        parseRelayConfig({ ...minimalNode, ...(value as object) }, 'relay.toml'),
      ).toThrow(new ConfigError(`relay.toml:\n${line}`));
    }
  });

  it('never repeats the value of a password key', () => {
    const node = { rpcUrl: 'http://h:1', rpcUser: 'u', rpcPassword: 8_675_309, payoutAddress: 'a' };
    expect(() => parseRelayConfig({ source: { type: 'node', node } }, 'relay.toml')).toThrow(
      new ConfigError('relay.toml:\nsource.node.rpcPassword: expected a string, got a number'),
    );
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
    expect(config.source.node).toMatchObject({ rpcUser: 'u', rpcPassword: 'from-env' });
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
    expect(config.source.node).toMatchObject({ rpcUser: 'u', rpcPassword: 'from-env' });
  });

  it('takes no RPC password from the environment when the node is reached by its cookie', () => {
    const file = write(
      'cookie.toml',
      [
        '[source]',
        'type = "node"',
        '[source.node]',
        'rpcUrl = "http://127.0.0.1:9332"',
        'rpcCookieFile = "cookie"',
        'payoutAddress = "a"',
      ].join('\n'),
    );
    const config = loadRelayConfig(file, { POWBRIDGE_RPC_PASSWORD: 'from-env' });
    expect(config.source.node).toEqual(
      expect.objectContaining({ rpcCookieFile: join(dir, 'cookie') }),
    );
    expect(config.source.node).not.toHaveProperty('rpcPassword');
  });

  it('the source is a node with one way of RPC auth, or a list of pools', () => {
    const solo = parseRelayConfig(minimalNode).source;
    if (solo.type !== 'node') throw new Error('expected a node source');
    expect('rpcCookieFile' in solo.node && solo.node.rpcCookieFile).toBe('c');
    const pooled = parseRelayConfig({
      source: { type: 'pool', pools: [{ url: 'stratum+tcp://pool.example:3333', user: 'u' }] },
    }).source;
    if (pooled.type !== 'pool') throw new Error('expected a pool source');
    expect(pooled.pools).toEqual([
      {
        url: 'stratum+tcp://pool.example:3333',
        user: 'u',
        password: 'x',
        tlsRejectUnauthorized: true,
      },
    ]);
  });

  it("checks the class tree with the HTB's schema: bytes/s, parents first, ready for the shaper", () => {
    const config = parseRelayConfig({
      ...minimalNode,
      tunnel: {
        classes: [
          { name: 'group4', parent: 'paid', rate: '1mbit' },
          { name: 'group1', parent: 'paid', rate: '4mbit' },
          { name: 'free', parent: 'root', rate: '2mbit', ceil: '4mbit', prio: 7 },
          { name: 'paid', parent: 'root', rate: '9mbit' },
          root10,
        ],
      },
    });
    const classes = config.tunnel.classes;
    if (classes === undefined) throw new Error('expected tunnel.classes');
    expect(classes.map((c) => [c.name, c.rate])).toEqual([
      ['root', 1_250_000],
      ['free', 250_000],
      ['paid', 1_125_000],
      ['group4', 125_000],
      ['group1', 500_000],
    ]);
    // The shaper takes the checked tree as it is; the warnings are computed there, once.
    const shaper = new HtbShaper({ classes });
    expect(shaper.htb.leafNames).toEqual(['free', 'group4', 'group1']);
    expect(shaper.warnings).toEqual([
      expect.stringMatching(/class "root": children's rates add up to 1375000 B\/s/),
    ]);
    shaper.close();
  });

  it('parses its own output to the same config (the CLI merges flags over a loaded file)', () => {
    for (const input of [
      {
        ...minimalNode,
        // A tree without the ticket groups' leaves is refused now (docs/design.md §8).
        tunnel: {
          classes: [
            root10,
            { name: 'free', parent: 'root', rate: '2mbit' },
            { name: 'paid', parent: 'root', rate: '8mbit' },
            { name: 'bronze', parent: 'paid', rate: '1mbit', prio: 2 },
            { name: 'gold', parent: 'paid', rate: '4mbit', prio: 0 },
          ],
          groups: [
            { minTickets: 1, leaf: 'bronze' },
            { minTickets: 3, leaf: 'gold' },
          ],
        },
        peers: [{ name: 'backup', url: 'http://127.0.0.1:1', identity: 'a'.repeat(64) }],
      },
      {
        source: {
          type: 'pool',
          pools: [{ url: 'stratum+ssl://pool.example:3333', user: 'u', tlsCaFile: 'ca.pem' }],
          node: { rpcUrl: 'http://h:1', rpcUser: 'u', rpcPassword: 'p', payoutAddress: 'a' },
        },
      },
    ]) {
      const once = parseRelayConfig(input);
      expect(parseRelayConfig(once)).toEqual(once);
    }
  });
});

/**
 * The `limits` keys of issue 15, by group: their defaults (in the schema and in the example
 * config) and values refused with the key named.
 */
const LIMIT_GROUPS: {
  group: string;
  defaults: Record<string, number>;
  refused: [Record<string, unknown>, RegExp][];
}[] = [
  {
    group:
      'floods: 100 verifications/s, 256 unregistered circuits at 500 frames/s, a 10 s deadline',
    defaults: {
      maxVerificationsPerSecond: 100,
      maxUnregistered: 256,
      maxUnregisteredRequestsPerSecond: 500,
      registerTimeoutSeconds: 10,
    },
    refused: [
      [{ maxVerificationsPerSecond: 0 }, /limits\.maxVerificationsPerSecond: /],
      [{ maxVerificationsPerSecond: 1e6 }, /limits\.maxVerificationsPerSecond: /],
      [{ maxUnregistered: 0 }, /limits\.maxUnregistered: /],
      [{ maxUnregistered: 2.5 }, /limits\.maxUnregistered: /],
      [{ maxUnregisteredRequestsPerSecond: 0 }, /limits\.maxUnregisteredRequestsPerSecond: /],
      [{ registerTimeoutSeconds: 0.5 }, /limits\.registerTimeoutSeconds: /],
      [{ registerTimeoutSeconds: 301 }, /limits\.registerTimeoutSeconds: /],
      [
        { registerTimeoutSeconds: '10' },
        /limits\.registerTimeoutSeconds: expected a number, got string "10"/,
      ],
    ],
  },
  {
    group:
      'the Stratum port: 1,000 miners apart from maxClients, a 300 s share deadline, a 20 s handshake',
    defaults: {
      maxStratumClients: 1_000,
      stratumShareTimeoutSeconds: 300,
      stratumHandshakeTimeoutSeconds: 20,
    },
    refused: [
      [{ maxStratumClients: 0 }, /limits\.maxStratumClients: /],
      [{ maxStratumClients: 1.5 }, /limits\.maxStratumClients: /],
      [{ stratumShareTimeoutSeconds: 5 }, /limits\.stratumShareTimeoutSeconds: /],
      [{ stratumShareTimeoutSeconds: '300' }, /limits\.stratumShareTimeoutSeconds: .*number/],
      [{ stratumHandshakeTimeoutSeconds: 0 }, /limits\.stratumHandshakeTimeoutSeconds: /],
      [{ stratumHandshakeTimeoutSeconds: 601 }, /limits\.stratumHandshakeTimeoutSeconds: /],
    ],
  },
];

describe.each(LIMIT_GROUPS)('limits for $group (issue 15)', ({ defaults, refused }) => {
  it('defaults, in the schema and in the example config', () => {
    expect(parseRelayConfig(minimalNode).limits).toMatchObject(defaults);
    const example = loadRelayConfig(join(root, 'config', 'relay.example.toml')).limits;
    expect(example).toMatchObject(defaults);
  });

  it('refuses values out of bounds, naming the key', () => {
    for (const [limits, message] of refused) {
      expect(() => parseRelayConfig({ ...minimalNode, limits })).toThrow(message);
    }
  });
});

describe('Stratum port limits (issue 15)', () => {
  it('maxStratumClients is apart from the circuits’ maxClients (10,000)', () => {
    expect(parseRelayConfig(minimalNode).limits.maxClients).toBe(10_000);
  });

  it('refuses circuits and Stratum miners that together need more than the 65,536 slots', () => {
    expect(() =>
      parseRelayConfig({
        ...minimalNode,
        limits: { maxClients: 60_000, maxStratumClients: 6_000 },
      }),
    ).toThrow(
      /^limits: maxClients \(60000\) \+ maxStratumClients \(6000\) = 66000, more than the 65536 extranonce slots the relay can hand out$/m,
    );
    // The default maxStratumClients counts too.
    expect(() => parseRelayConfig({ ...minimalNode, limits: { maxClients: 65_000 } })).toThrow(
      /limits: maxClients \(65000\) \+ maxStratumClients \(1000\)/,
    );
    const fits = parseRelayConfig({
      ...minimalNode,
      limits: { maxClients: 60_000, maxStratumClients: 5_536 },
    });
    expect(fits.limits.maxClients + fits.limits.maxStratumClients).toBe(65_536);
  });
});

describe('status history (issue 16)', () => {
  it('defaults: a sample every 10 s for 24 h, 8,640 samples; the example says the same', () => {
    const { status } = parseRelayConfig(minimalNode);
    expect(status).toEqual({ sampleSeconds: 10, historyHours: 24 });
    expect(historySamples(status)).toBe(8_640);
    const example = loadRelayConfig(join(root, 'config', 'relay.example.toml')).status;
    expect(example).toEqual({ sampleSeconds: 10, historyHours: 24 });
  });

  it('refuses values out of bounds and a history above 100,000 samples, naming the key', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ sampleSeconds: 0.5 }, /^status\.sampleSeconds: at least 1 second$/m],
      [{ sampleSeconds: 3601 }, /^status\.sampleSeconds: at most 3600 seconds$/m],
      [{ sampleSeconds: '10' }, /^status\.sampleSeconds: expected a number of seconds$/m],
      [{ historyHours: 0 }, /^status\.historyHours: must be more than 0 hours$/m],
      [{ historyHours: 745 }, /^status\.historyHours: at most 744 hours \(31 days\)$/m],
      [
        { sampleSeconds: 1, historyHours: 48 },
        /^status\.historyHours: 48 h at one sample every 1 s is 172800 samples, more than 100000/m,
      ],
      [{ samples: 5 }, /^status: unknown key samples$/m],
    ];
    for (const [status, message] of cases) {
      expect(() => parseRelayConfig({ ...minimalNode, status })).toThrow(message);
    }
    expect(
      historySamples(parseRelayConfig({ ...minimalNode, status: { sampleSeconds: 1 } }).status),
    ).toBe(86_400);
  });
});

describe('ticket storage (issue 17)', () => {
  it('defaults to SQLite in the data directory; the example says the same', () => {
    expect(parseRelayConfig(minimalNode).storage).toEqual({});
    expect(loadRelayConfig(join(root, 'config', 'relay.example.toml')).storage).toEqual({});
    const storage = { url: 'postgres://powbridge@db.example:5432/tickets', passwordFile: 'pg' };
    expect(parseRelayConfig({ ...minimalNode, storage }).storage).toEqual(storage);
    expect(
      parseRelayConfig({
        ...minimalNode,
        storage: { url: 'postgresql://u@[::1]/t?sslmode=require' },
      }).storage.url,
    ).toBe('postgresql://u@[::1]/t?sslmode=require');
  });

  it('refuses a URL with a password, and never repeats it', () => {
    for (const url of [
      'postgres://powbridge:hunter22@db.example:5432/tickets',
      'postgres://powbridge@db.example/tickets?password=hunter22',
    ]) {
      let message = '';
      try {
        parseRelayConfig({ ...minimalNode, storage: { url } }, 'relay.toml');
      } catch (err) {
        message = String(err);
      }
      expect(message).toMatch(
        /^ConfigError: relay\.toml:\nstorage\.url: must not hold a password: put it in storage\.passwordFile or \$PGPASSWORD$/,
      );
      expect(message).not.toContain('hunter22');
    }
  });

  it('refuses a URL that is not a PostgreSQL database, naming the key', () => {
    const cases: [unknown, RegExp][] = [
      ['mysql://u@h/db', /^storage\.url: expected a postgres:\/\/ URL/m],
      ['not a url', /^storage\.url: expected a URL like postgres:\/\/powbridge@db\.example/m],
      ['postgres://u@h', /^storage\.url: names no database/m],
      ['postgres://u@h/', /^storage\.url: names no database/m],
      ['postgres://h/db', /^storage\.url: names no user/m],
      [`postgres://u@h/${'d'.repeat(1024)}`, /^storage\.url: must be at most 1024 characters/m],
      [5432, /^storage\.url: expected a string, got number 5432$/m],
    ];
    for (const [url, message] of cases) {
      expect(() => parseRelayConfig({ ...minimalNode, storage: { url } })).toThrow(message);
    }
    expect(() => parseRelayConfig({ ...minimalNode, storage: { passwordFile: 'pg' } })).toThrow(
      /^storage\.passwordFile: passwordFile is for a PostgreSQL url: set storage\.url too$/m,
    );
    expect(() => parseRelayConfig({ ...minimalNode, storage: { path: 'x' } })).toThrow(
      /^storage: unknown key path$/m,
    );
  });

  it('resolves the password file against the config file', () => {
    const file = write(
      'storage.toml',
      [
        '[source]',
        'type = "node"',
        '[source.node]',
        'rpcUrl = "http://127.0.0.1:9332"',
        'rpcCookieFile = "cookie"',
        'payoutAddress = "a"',
        '[storage]',
        'url = "postgres://powbridge@127.0.0.1:5432/powbridge"',
        'passwordFile = "secrets/pg"',
        'familyKeyFile = "secrets/family.key"',
      ].join('\n'),
    );
    const { storage } = loadRelayConfig(file, {});
    expect(storage.passwordFile).toBe(join(dir, 'secrets', 'pg'));
    expect(storage.familyKeyFile).toBe(join(dir, 'secrets', 'family.key'));
  });

  it('takes a family key file only beside a PostgreSQL url (keys stay local by default)', () => {
    expect(parseRelayConfig(minimalNode).storage.familyKeyFile).toBeUndefined();
    const url = 'postgres://powbridge@db.example:5432/tickets';
    expect(
      parseRelayConfig({ ...minimalNode, storage: { url, familyKeyFile: 'family.key' } }).storage
        .familyKeyFile,
    ).toBe('family.key');
    const cases: [unknown, RegExp][] = [
      [
        { familyKeyFile: 'family.key' },
        /^storage\.familyKeyFile: familyKeyFile shares keys through a PostgreSQL database: set storage\.url too$/m,
      ],
      [{ url, familyKeyFile: '' }, /^storage\.familyKeyFile: must not be empty$/m],
      [{ url, familyKeyFile: 32 }, /^storage\.familyKeyFile: expected a string, got number 32$/m],
    ];
    for (const [storage, message] of cases) {
      expect(() => parseRelayConfig({ ...minimalNode, storage })).toThrow(message);
    }
  });
});
