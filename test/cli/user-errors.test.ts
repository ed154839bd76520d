import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { ConfigError } from '../../src/relay/config.js';
import { fail } from '../../src/cli/output.js';
import { UsageError } from '../../src/cli/usage-error.js';
import { runCli } from '../helpers/cli.js';

/**
 * The common mistakes, command by command, run through the built CLI: each exits with 2, says
 * what is wrong in one line on stderr ("powbridge <cmd>: …", usage errors ending with the
 * --help hint; a bad config goes on with one line per problem), prints nothing on stdout and
 * no stack trace. docs/operating.md "Errors and exit codes" is the same table for people.
 */

const dir = mkdtempSync(join(tmpdir(), 'powbridge-user-errors-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const good = file(
  'good.toml',
  [
    '[relay]',
    'dataDir = "data"',
    '[source]',
    'type = "node"',
    '[source.node]',
    'rpcUrl = "http://127.0.0.1:1"',
    'rpcCookieFile = "cookie"',
    'payoutAddress = "a"',
  ].join('\n'),
);
// A value TOML cannot parse (unquoted) on line 5, column 9.
const syntax = file(
  'syntax.toml',
  '[relay]\nlisten = "127.0.0.1:8640"\n\n[tickets]\nprice = sixteen\n',
);
const types = file(
  'types.toml',
  [
    '[relay]',
    'lisen = "127.0.0.1:8640"',
    '[source]',
    'type = "node"',
    '[source.node]',
    'rpcUrl = "http://127.0.0.1:1"',
    'rpcCookieFile = "cookie"',
    'payoutAddress = "a"',
    '[tickets]',
    'price = "sixteen"',
  ].join('\n'),
);
const typesLines = [
  'relay: unknown key lisen (did you mean listen?)',
  'tickets.price: expected a number, got string "sixteen"',
];
const missing = join(dir, 'missing.toml');
/** JSON, but not a ticket file (`powbridge tickets import`). */
const notTickets = file('not-tickets.json', '{"format":"something-else","version":1}\n');
/** A file where a directory is expected (root reads any mode, so no chmod 000 here). */
const notADir = file('plain-file', 'not a directory\n');

/** A usage error's one line. */
const usage = (command: string, message: string) =>
  `${command ? `powbridge ${command}` : 'powbridge'}: ${message} (see powbridge${command ? ` ${command}` : ''} --help)`;

/** The exact line, a pattern for the one line, or every line (a config's problems). */
type Expected = string | RegExp | readonly string[];
type Mistake = readonly [label: string, args: readonly string[], expected: Expected];

const MISTAKES: Record<string, readonly Mistake[]> = {
  powbridge: [
    ['misspelt command', ['mien'], usage('', "unknown command 'mien' (did you mean mine?)")],
    ['unknown option', ['--bogus'], usage('', "unknown option '--bogus'")],
  ],
  relay: [
    [
      'no --config',
      ['relay'],
      usage('relay', "required option '-c, --config <file>' not specified"),
    ],
    [
      'misspelt flag',
      ['relay', '-c', good, '--lisen', '127.0.0.1:1'],
      usage('relay', "unknown option '--lisen' (did you mean --listen?)"),
    ],
    [
      'bad --listen',
      ['relay', '-c', good, '--listen', 'nonsense'],
      usage(
        'relay',
        "option '--listen <host:port>' argument 'nonsense' is invalid. expected host:port, e.g. 127.0.0.1:8640",
      ),
    ],
    [
      'missing config file',
      ['relay', '-c', missing],
      `powbridge relay: ${missing}: no such file (ENOENT)`,
    ],
    [
      'TOML syntax error',
      ['relay', '-c', syntax],
      `powbridge relay: ${syntax}:5:9: not valid TOML: invalid value`,
    ],
    [
      'wrong type and unknown key',
      ['relay', '-c', types],
      [`powbridge relay: ${types}:`, ...typesLines],
    ],
  ],
  mine: [
    [
      'bare address',
      ['mine', '--relay', '127.0.0.1:8640'],
      usage(
        'mine',
        '--relay: 127.0.0.1:8640 is not a URL; did you mean ws://127.0.0.1:8640/v1/circuit?',
      ),
    ],
    [
      'port out of range',
      ['mine', '--relay', 'ws://127.0.0.1:1', '--socks-listen', '127.0.0.1:99999'],
      usage(
        'mine',
        "option '--socks-listen <host:port>' argument '127.0.0.1:99999' is invalid. port above 65535",
      ),
    ],
    [
      'bad --proxy',
      ['mine', '--relay', 'ws://127.0.0.1:1', '--proxy', 'tor'],
      /^powbridge mine: option '--proxy <url>' argument 'tor' is invalid\. not a URL; use socks5h:\/\/host:port .*\(see powbridge mine --help\)$/,
    ],
    [
      'a wallet path through a file',
      ['mine', '--relay', 'ws://127.0.0.1:1', '--wallet', join(notADir, 'wallet.sqlite')],
      /^powbridge mine: .*plain-file/,
    ],
  ],
  hash: [
    [
      'unknown algorithm',
      ['hash', '-a', 'x11', '--header', '00'],
      usage(
        'hash',
        "option '-a, --algorithm <name>' argument 'x11' is invalid. Allowed choices are sha256d, scrypt.",
      ),
    ],
    [
      'header not hex',
      ['hash', '-a', 'scrypt', '--header', 'zz'],
      usage('hash', '--header: not an even-length hex string'),
    ],
  ],
  keys: [
    ['unknown subcommand', ['keys', 'burn'], usage('keys', "unknown command 'burn'")],
    [
      'no key location',
      ['keys', 'show'],
      usage('keys show', 'say where the keys are: --data-dir <dir> or --config <relay.toml>'),
    ],
    [
      '--data-dir with --config',
      ['keys', 'show', '-d', dir, '-c', good],
      usage(
        'keys show',
        "option '-d, --data-dir <dir>' cannot be used with option '-c, --config <file>'",
      ),
    ],
    [
      'a data directory that is a file',
      ['keys', 'generate', '-d', notADir],
      /^powbridge keys generate: .*not a directory.*plain-file/,
    ],
    [
      'a family key without --out',
      ['keys', 'family-key'],
      usage('keys family-key', "required option '-o, --out <file>' not specified"),
    ],
    [
      'a family key over an existing file',
      ['keys', 'family-key', '--out', good],
      /^powbridge keys family-key: .*good\.toml exists; refusing to overwrite it/,
    ],
  ],
  tickets: [
    [
      'bad --state',
      ['tickets', 'list', '--state', 'lost'],
      usage(
        'tickets list',
        "option '--state <state>' argument 'lost' is invalid. Allowed choices are unspent, spent, expired.",
      ),
    ],
    [
      'missing --wallet file',
      ['tickets', 'list', '--wallet', join(dir, 'typo.sqlite')],
      `powbridge tickets list: no wallet at ${join(dir, 'typo.sqlite')} (the miner creates its wallet with its first ticket)`,
    ],
    [
      'not a relay URL',
      ['tickets', 'redeem', '--relay', 'nope'],
      usage(
        'tickets redeem',
        "option '-r, --relay <url>' argument 'nope' is invalid. not a URL: nope",
      ),
    ],
    [
      'import: no file named',
      ['tickets', 'import'],
      usage('tickets import', "missing required argument 'file'"),
    ],
    [
      'import: missing ticket file',
      ['tickets', 'import', missing, '--wallet', join(dir, 'import.sqlite')],
      `powbridge tickets import: ${missing}: no such file`,
    ],
    [
      'import: not a ticket file',
      ['tickets', 'import', good, '--wallet', join(dir, 'import.sqlite')],
      'powbridge tickets import: ticket file: not JSON',
    ],
    [
      'import: a file of another format',
      ['tickets', 'import', notTickets, '--wallet', join(dir, 'import.sqlite')],
      'powbridge tickets import: ticket file: format: expected "powbridge-tickets"',
    ],
    [
      'import: bad --relay-identity',
      ['tickets', 'import', missing, '--relay-identity', 'abc'],
      usage(
        'tickets import',
        "option '--relay-identity <hex>' argument 'abc' is invalid. expected 64 hex characters",
      ),
    ],
    [
      'export: no --relay',
      ['tickets', 'export'],
      usage('tickets export', "required option '-r, --relay <url>' not specified"),
    ],
  ],
  peers: [
    [
      'missing config file',
      ['peers', 'status', '-c', missing],
      `powbridge peers status: ${missing}: no such file (ENOENT)`,
    ],
    [
      'no peer named',
      ['peers', 'settle', '-c', good],
      usage('peers settle', "missing required argument 'peer'"),
    ],
    [
      'no count',
      ['peers', 'settle', 'r2', '-c', good],
      usage('peers settle', 'say how many tickets the payment covers: --count <n> or --all'),
    ],
  ],
  demo: [
    [
      'bad --duration',
      ['demo', '--duration', 'x'],
      usage(
        'demo',
        "option '--duration <s>' argument 'x' is invalid. expected whole seconds, 0..86400 (0: until Ctrl-C)",
      ),
    ],
  ],
  terms: [
    [
      'bad --price',
      ['terms', '--price', 'x'],
      /^powbridge terms: option '--price <credit>' argument 'x' is invalid\. .*\(see powbridge terms --help\)$/,
    ],
    [
      'TOML syntax error',
      ['terms', '-c', syntax, '--hashrate', '1000'],
      `powbridge terms: ${syntax}:5:9: not valid TOML: invalid value`,
    ],
  ],
};

async function expectRefused(args: readonly string[], expected: Expected): Promise<void> {
  // A generous bound: a loaded 2-core machine starts node slowly; it only stops a hang.
  const result = await runCli([...args], 60_000);
  expect(result.stderr).not.toMatch(/^\s+at /m);
  expect(result.stderr).not.toMatch(/internal error/);
  expect(result.stderr.endsWith('\n')).toBe(true);
  const lines = result.stderr.slice(0, -1).split('\n');
  if (typeof expected === 'string') expect(lines).toEqual([expected]);
  else if (expected instanceof RegExp) {
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(expected);
  } else expect(lines).toEqual(expected);
  expect(result.stdout).toBe('');
  expect(result.code).toBe(2);
}

for (const [command, mistakes] of Object.entries(MISTAKES)) {
  describe(`${command === 'powbridge' ? '' : 'powbridge '}${command}: mistakes`, () => {
    it.each(mistakes)('%s: exit 2, one plain line, no stack', async (_label, args, expected) => {
      await expectRefused(args, expected);
    });
  });
}

describe('powbridge without a subcommand', () => {
  it.each([[[]], [['keys']]])(
    '%j prints its help on stderr and exits 2',
    async (args: string[]) => {
      const result = await runCli(args, 60_000);
      expect(result.stderr).toMatch(
        new RegExp(`^Usage: ${['powbridge', ...args].join(' ')} \\[options\\] \\[command\\]\\n`),
      );
      expect(result.stdout).toBe('');
      expect(result.code).toBe(2);
    },
  );
});

describe('fail(): a mistake of the user, or a bug', () => {
  let written = '';
  const previousExitCode = process.exitCode;
  afterEach(() => {
    vi.restoreAllMocks();
    process.exitCode = previousExitCode;
    written = '';
  });
  function failWith(err: unknown): { text: string; exitCode: typeof process.exitCode } {
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written += String(chunk);
      return true;
    });
    fail('keys show', err);
    const exitCode = process.exitCode;
    vi.restoreAllMocks();
    return { text: written, exitCode };
  }

  const invalidUrl = (() => {
    try {
      new URL('not a url');
    } catch (err) {
      return err;
    }
    throw new Error('expected new URL to throw');
  })();

  const cases: [string, unknown, RegExp, number][] = [
    [
      'a plain Error',
      new Error('no keys; create them'),
      /^powbridge keys show: no keys; create them\n$/,
      2,
    ],
    [
      'a RangeError of ours',
      new RangeError('not a URL: x'),
      /^powbridge keys show: not a URL: x\n$/,
      2,
    ],
    ['a string', 'nothing to settle', /^powbridge keys show: nothing to settle\n$/, 2],
    [
      'a config error, line by line',
      new ConfigError('relay.toml:\nsource: required'),
      /^powbridge keys show: relay\.toml:\nsource: required\n$/,
      2,
    ],
    [
      'a UsageError, with the hint',
      new UsageError('say where the keys are'),
      /^powbridge keys show: say where the keys are \(see powbridge keys show --help\)\n$/,
      2,
    ],
    [
      "Node's own TypeError for bad input (it has a code)",
      invalidUrl,
      /^powbridge keys show: Invalid URL\n$/,
      2,
    ],
    [
      'a TypeError from a bug',
      new TypeError("Cannot read properties of undefined (reading 'keyId')"),
      /^powbridge keys show: internal error .*\nTypeError: Cannot read properties of undefined \(reading 'keyId'\)\n {4}at .*\n[^]*please report it/,
      70,
    ],
    [
      'a ReferenceError',
      new ReferenceError('store is not defined'),
      /internal error[^]*ReferenceError: store is not defined\n {4}at /,
      70,
    ],
  ];
  it.each(cases)('%s', (_label, err, text, exitCode) => {
    const result = failWith(err);
    expect(result.text).toMatch(text);
    expect(result.exitCode).toBe(exitCode);
  });
});
