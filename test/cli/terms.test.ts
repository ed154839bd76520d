import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommanderError } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HashrateMeasurement } from '../../src/client/hashrate-probe.js';
import { type Measure, parseHashrate, termsCommand } from '../../src/cli/terms.js';
import { exitCodeOf, plainUsageErrors } from '../../src/cli/usage-error.js';
import type { TermsReport } from '../../src/work/ticket-economics.js';
import { runCli } from '../helpers/cli.js';
import { relayTomlLines } from '../helpers/test-relay.js';

/**
 * `powbridge terms`. The measurement of this machine is injected (in-process runs of the
 * command), so no test depends on how fast anything hashes; the built binary is run with
 * --hashrate for the output and every refused argument.
 */

/** 16 credit at difficulty 1, scrypt: 16 × 2^32 / 65535 hashes. */
const SCRYPT_TICKET_HASHES = (16 * 2 ** 32) / 65535;

let root: string;
let soloConfig: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'powbridge-cli-terms-'));
  soloConfig = join(root, 'relay.toml');
  // relayTomlLines: a solo (type = "node") sha256d relay; price and window of its own.
  await writeFile(
    soloConfig,
    [
      ...relayTomlLines(join(root, 'data')),
      '[difficulty]',
      'ticketDifficulty = 0.5',
      '[tickets]',
      'price = 4',
      'windowSeconds = 300',
    ].join('\n'),
  );
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

interface JsonReport extends TermsReport {
  measurement: HashrateMeasurement | null;
  assumptions: string[];
}

/**
 * Run the command in this process as main.ts does (one-line usage errors that throw instead
 * of exiting), with a measurement that returns `hps` at once.
 */
async function runMeasured(
  args: string[],
  hps = 1000,
  load = { average: 0.1, cpus: 4 },
): Promise<{ out: string; err: string; asked: Parameters<Measure>[0][]; code: number }> {
  const asked: Parameters<Measure>[0][] = [];
  let out = '';
  let err = '';
  const command = termsCommand({
    measure: (options) => {
      asked.push(options);
      return Promise.resolve({ ...options, hashes: hps * options.seconds, hps, load });
    },
    stdout: (text) => {
      out += text;
    },
    stderr: (text) => {
      err += text;
    },
  });
  plainUsageErrors(command, ['terms']);
  command.configureOutput({
    writeErr: (text) => {
      err += text;
    },
  });
  try {
    await command.parseAsync(args, { from: 'user' });
    return { out, err, asked, code: 0 };
  } catch (error) {
    if (!(error instanceof CommanderError)) throw error;
    return { out, err, asked, code: exitCodeOf(error) };
  }
}

describe('powbridge terms, measuring this machine', () => {
  it("measures with the relay's algorithm, --threads and --measure-seconds", async () => {
    const { out, err, asked } = await runMeasured(
      ['--threads', '3', '--measure-seconds', '0.5', '--json'],
      4096,
    );
    expect(asked).toEqual([{ algorithm: 'scrypt', threads: 3, seconds: 0.5 }]);
    expect(err).toMatch(/measuring this machine's scrypt hash rate with 3 threads/);
    const report = JSON.parse(out) as JsonReport;
    expect(report.hashrate).toBe(4096);
    expect(report.measurement).toMatchObject({ threads: 3, hps: 4096 });
    expect(report.miner.hashesPerTicket).toBeCloseTo(SCRYPT_TICKET_HASHES, 3);
    expect(report.miner.secondsPerTicket).toBeCloseTo(SCRYPT_TICKET_HASHES / 4096, 6);
  });

  it('takes the algorithm and terms from --config, flags over them', async () => {
    const fromConfig = await runMeasured(['--config', soloConfig, '--json'], 1e6);
    expect(fromConfig.asked).toEqual([{ algorithm: 'sha256d', threads: 1, seconds: 2 }]);
    const report = JSON.parse(fromConfig.out) as JsonReport;
    expect(report.terms).toMatchObject({
      algorithm: 'sha256d',
      price: 4,
      ticketDifficulty: 0.5,
      windowSeconds: 300,
    });
    // 4 credit × 0.5 = 2 sha256d difficulty units = 2 × 2^48 / 65535 hashes.
    expect(report.miner.hashesPerTicket).toBeCloseTo((2 * 2 ** 48) / 65535, 0);
    // A 300 s window: one ticket counting all the time is 12 an hour.
    expect(report.miner.groups[0]?.ticketsPerHour).toBe(12);

    const scrypt = await runMeasured(
      ['--config', soloConfig, '--algorithm', 'scrypt', '--price', '16'],
      4096,
    );
    expect(scrypt.asked[0]?.algorithm).toBe('scrypt');
    expect(scrypt.out).toMatch(
      /^Terms: scrypt, price 16 credit, ticketDifficulty 0\.5, window 300 s/,
    );
    expect(scrypt.out).toContain(`${soloConfig}, flags over it`);
    expect(scrypt.out).toMatch(
      /Hash rate: 4\.1 kH\/s, measured on this machine: 1 thread of the miner's scrypt kernel/,
    );
  });
  it('says when the machine was too busy for the measurement to mean much', async () => {
    const busy = await runMeasured([], 3800, { average: 9.2, cpus: 2 });
    expect(busy.out).toContain(
      '(this machine is busy: load average 9.2 on 2 CPUs, so the figure is low; measure again',
    );
    // One thread on 2 CPUs with one other task running: each gets a core.
    const shared = await runMeasured([], 3800, { average: 1.2, cpus: 2 });
    expect(shared.out).not.toContain('busy');
    const given = await runMeasured(['--hashrate', '3800']);
    expect(given.out).not.toContain('busy');
  });
});

describe('powbridge terms --hashrate', () => {
  it("prints a ticket's cost in hashes and minutes and the tickets an hour", async () => {
    const result = await runCli(['terms', '--hashrate', '4096']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const out = result.stdout;
    expect(out).toContain(
      "Terms: scrypt, price 16 credit, ticketDifficulty 1, window 600 s (the relay's defaults)",
    );
    expect(out).toContain('Hash rate: 4.1 kH/s (given)');
    expect(out).toContain('one credit        one accepted share at difficulty 1 = 65.5 k hashes');
    expect(out).toContain('one ticket        16 credit = 1.05 M hashes expected');
    // 1,048,592 hashes at 4096 H/s: 256 s, 14.06 an hour; about 17 shares at one per 15 s.
    expect(out).toContain('time per ticket   4.27 min at 4.1 kH/s (±24%: about 17 shares');
    expect(out).toContain('tickets per hour  14.1');
    expect(out).toContain('group4 (1+)     6 tickets/h, 43% of what this hash rate earns\n');
    expect(out).toContain('group1 (4+)     24 tickets/h, 171% of what this hash rate earns: more');
    expect(out).toMatch(/The relay: give --network-difficulty/);
    expect(out).toMatch(/Assumptions\n {2}- Every figure is an expected value/);
  });

  it("values the work upstream at the network difficulty, with Litecoin's subsidy by default", async () => {
    const result = await runCli([
      'terms',
      '--hashrate',
      '4096',
      '--network-difficulty',
      '6e7',
      '--upstream-difficulty',
      '64',
      '--json',
    ]);
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as JsonReport;
    const perBlock = (6e7 * 2 ** 48) / 65535;
    expect(report.relay).toMatchObject({ coin: 'LTC', basis: { blockReward: 6.25 } });
    expect(
      (report.relay?.valuePerTicket ?? 0) / ((SCRYPT_TICKET_HASHES / perBlock) * 6.25),
    ).toBeCloseTo(1, 9);
    expect(report.relay?.forwardedPerTicket).toBe(0.25);
    expect(report.measurement).toBeNull();
    expect(report.assumptions.join(' ')).toMatch(/transaction fees are not counted/);

    const text = await runCli(['terms', '--hashrate', '4096', '--network-difficulty', '6e7']);
    expect(text.stdout).toContain(
      'network           difficulty 6e7 (getdifficulty; 3.93e12 in scrypt share units):',
    );
    expect(text.stdout).toContain('block reward      6.25 LTC\n');
    expect(text.stdout).toMatch(/forwarded {9}give --upstream-difficulty/);
  });

  it('solo (--config with type = "node"): a share goes up only as a block', async () => {
    const result = await runMeasured([
      '--config',
      soloConfig,
      '--hashrate',
      '1G',
      '--network-difficulty',
      '1e14',
      '--json',
    ]);
    expect(result.code).toBe(0);
    expect(result.asked).toEqual([]);
    const report = JSON.parse(result.out) as JsonReport;
    expect(report.relay).toMatchObject({ coin: 'BTC', basis: { blockReward: 3.125 } });
    expect(report.relay?.upstreamDifficulty).toBe(1e14);
    expect(report.relay?.forwardedPerTicket).toBeCloseTo(
      report.relay?.blockChancePerTicket ?? 0,
      20,
    );
  });

  it("values the work at a pool's pay per share with --share-value", async () => {
    const result = await runMeasured(['--hashrate', '4k', '--share-value', '2e-9', '--json']);
    expect(result.code).toBe(0);
    expect(result.asked).toEqual([]);
    const report = JSON.parse(result.out) as JsonReport;
    expect(report.relay?.valuePerTicket).toBeCloseTo(16 * 2e-9, 20);
    expect(report.relay?.hashesPerBlock).toBeNull();
  });

  it('parses hash rates as people write them', () => {
    expect(parseHashrate('5000')).toBe(5000);
    expect(parseHashrate('5k')).toBe(5000);
    expect(parseHashrate('5K')).toBe(5000);
    expect(parseHashrate('1.2MH/s')).toBe(1.2e6);
    expect(parseHashrate('3 GH/s')).toBe(3e9);
    expect(parseHashrate('2e3')).toBe(2000);
    for (const bad of ['', '0', '-5', 'abc', '5x', '5 kb', 'NaN', 'Infinity']) {
      expect(() => parseHashrate(bad)).toThrow(/expected hashes per second/);
    }
  });

  const refused: [string, string[], RegExp][] = [
    [
      'a hash rate that is not one',
      ['--hashrate', 'fast'],
      /'--hashrate <H\/s>' argument 'fast' is invalid\. expected hashes per second/,
    ],
    [
      '--hashrate with --threads',
      ['--hashrate', '5k', '--threads', '2'],
      /'--hashrate <H\/s>' cannot be used with option '--threads <n>'/,
    ],
    [
      'zero threads',
      ['--threads', '0'],
      /'--threads <n>' argument '0' is invalid\. expected a whole number from 1 to 256/,
    ],
    [
      'a price of 0',
      ['--hashrate', '5k', '--price', '0'],
      /'--price <credit>' argument '0' is invalid\. expected a price > 0/,
    ],
    [
      'a window below 10 s',
      ['--hashrate', '5k', '--window', '5'],
      /expected whole seconds from 10 to 86400/,
    ],
    [
      'a ticket difficulty of 0',
      ['--hashrate', '5k', '--ticket-difficulty', '0'],
      /expected a difficulty >= 2\^-32/,
    ],
    [
      'an unknown algorithm',
      ['--hashrate', '5k', '-a', 'x11'],
      /Allowed choices are sha256d, scrypt/,
    ],
    [
      'a negative network difficulty',
      ['--hashrate', '5k', '--network-difficulty', '-1'],
      /expected a difficulty > 0/,
    ],
    [
      'a pool fee of 100%',
      ['--hashrate', '5k', '--network-difficulty', '1', '--pool-fee', '100'],
      /a percentage from 0 to 99\.99/,
    ],
    [
      '--share-value with --network-difficulty',
      ['--hashrate', '5k', '--share-value', '1', '--network-difficulty', '1'],
      /'--share-value <coins>' cannot be used with option '--network-difficulty <d>'/,
    ],
    ['a measuring time of 0', ['--measure-seconds', '0'], /expected seconds from 0\.2 to 60/],
  ];
  for (const [name, args, message] of refused) {
    it(`refuses ${name} with one line and exit code 2`, async () => {
      const result = await runMeasured(args);
      expect(result.code).toBe(2);
      expect(result.err).toMatch(message);
      expect(result.err).toMatch(/^powbridge terms: .* \(see powbridge terms --help\)\n$/);
      expect(result.asked).toEqual([]);
      expect(result.out).toBe('');
    });
  }

  // The built binary, as a user runs it: a check of the command's own after commander's, an
  // unknown option, and a config that cannot be read.
  const refusedByBinary: [string, string[], RegExp][] = [
    [
      '--block-reward alone',
      ['--hashrate', '5k', '--block-reward', '3'],
      /--block-reward needs --network-difficulty \(see powbridge terms --help\)/,
    ],
    [
      'an unknown option',
      ['--hashrate', '5k', '--hashrates', '5k'],
      /unknown option '--hashrates'/,
    ],
    [
      'a missing config',
      ['--hashrate', '5k', '--config', '/nonexistent/relay.toml'],
      /\/nonexistent\/relay\.toml: .*\(ENOENT\)/,
    ],
  ];
  for (const [name, args, message] of refusedByBinary) {
    it(`refuses ${name} with one line and exit code 2 (the binary)`, async () => {
      const result = await runCli(['terms', ...args]);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(message);
      expect(result.stderr).toMatch(/^powbridge terms: /);
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
      expect(result.stdout).toBe('');
    });
  }

  it('refuses a config with a bad key, naming it', async () => {
    const bad = join(root, 'bad.toml');
    await writeFile(
      bad,
      [...relayTomlLines(join(root, 'data')), '[tickets]', 'price = 0'].join('\n'),
    );
    const result = await runCli(['terms', '--hashrate', '5k', '--config', bad]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/tickets\.price/);
    expect(result.stdout).toBe('');
  });
});
