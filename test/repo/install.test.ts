import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/litecoind.js';
import { notifyParams, ScriptedPool } from '../helpers/scripted-pool.js';
import { headerVectors } from '../helpers/vectors.js';

/**
 * The install a user does (README, "Install"), outside the clone: `npm pack` builds dist/ and
 * packs it, `npm install -g` puts the tarball under a temporary prefix, and the `powbridge` it
 * puts on PATH prints its help, hashes a real header with the WebAssembly kernels, and runs a
 * relay (SQLite, the dashboard's files, the share-checking worker) that a miner from the same
 * install mines for (its worker threads and kernels).
 *
 * Slow: npm compiles better-sqlite3 from source, over a minute of CPU. Offline: a tarball
 * install has no lockfile (npm ignores a packed npm-shrinkwrap.json, npm/cli#5349), so npm
 * resolves the dependencies from registry metadata, which `npm ci` does not cache;
 * scripts/setup.sh resolves them once into npm's cache, and the install here runs --offline.
 */

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const version = (
  JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }
).version;

/** Hang limits, not speed checks: the native build alone takes 1–4 min on a loaded 2-core machine. */
const PACK_LIMIT_MS = 6 * 60_000;
const INSTALL_LIMIT_MS = 15 * 60_000;
const COMMAND_LIMIT_MS = 60_000;

interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** The environment minus npm's per-run variables (npm_config_local_prefix would be /work's). */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!/^npm_/i.test(key) && key !== 'INIT_CWD') env[key] = value;
  }
  return { ...env, ...extra };
}

/** Every child runs in its own process group, so a limit kills npm's compilers with it. */
function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function run(
  command: string,
  args: string[],
  options: { cwd: string; env: NodeJS.ProcessEnv; limitMs: number },
): Promise<Finished> {
  const started = Date.now();
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const limit = setTimeout(() => {
    stderr += `\n[killed after ${options.limitMs} ms]`;
    killGroup(child);
  }, options.limitMs);
  return new Promise((resolve, reject) => {
    child.once('error', (err) => {
      clearTimeout(limit);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(limit);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started });
    });
  });
}

/** A long-running child (relay, miner) whose stderr is collected; stopped in afterAll. */
interface Running {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

const running: Running[] = [];

function start(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Running {
  const child = spawn(command, args, {
    cwd,
    env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  child.stdout?.on('data', (d: Buffer) => (text += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (text += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const handle = { child, output: () => text, exited };
  running.push(handle);
  return handle;
}

/** Sends `signal`, and kills the group if the process has not exited within 20 s. */
async function stop(r: Running, signal: NodeJS.Signals): Promise<number | null> {
  r.child.kill(signal);
  const limit = setTimeout(() => killGroup(r.child), 20_000);
  try {
    return await r.exited;
  } finally {
    clearTimeout(limit);
  }
}

/**
 * The work tree as a fresh clone has it (tracked and new files, nothing ignored), with the
 * clone's node_modules for the build tools. Packing here, not in the clone, keeps prepack's
 * rebuild of dist/ away from the dist/ that other tests are running at the same moment.
 */
function copyWorkTree(dest: string): void {
  const listed = execFileSync(
    'git',
    ['ls-files', '-z', '--cached', '--others', '--exclude-standard'],
    { cwd: root, encoding: 'utf8' },
  );
  for (const file of listed.split('\0')) {
    // Regular files only: skips files deleted in the work tree.
    if (file === '' || !lstatSync(join(root, file), { throwIfNoEntry: false })?.isFile()) continue;
    mkdirSync(dirname(join(dest, file)), { recursive: true });
    copyFileSync(join(root, file), join(dest, file));
  }
  symlinkSync(join(root, 'node_modules'), join(dest, 'node_modules'), 'dir');
}

/**
 * better-sqlite3 compiles against Node's headers. Where npm has no `nodedir` configured, point
 * it at the headers installed with this Node (Debian/NodeSource: /usr/include/node), as
 * scripts/setup.sh does, so node-gyp does not download them.
 */
async function nodeHeadersEnv(cwd: string): Promise<Record<string, string>> {
  const prefix = dirname(dirname(process.execPath));
  if (!existsSync(join(prefix, 'include', 'node', 'common.gypi'))) return {};
  const configured = await run('npm', ['config', 'get', 'nodedir'], {
    cwd,
    env: cleanEnv(),
    limitMs: COMMAND_LIMIT_MS,
  });
  return configured.stdout.trim() === 'undefined' ? { npm_config_nodedir: prefix } : {};
}

interface PackResult {
  filename: string;
  files: { path: string }[];
}

let work: string;
let installed: string;
let packed: PackResult;
let installOutput: string;
let userEnv: NodeJS.ProcessEnv;

beforeAll(
  async () => {
    work = mkdtempSync(join(tmpdir(), 'powbridge-install-'));
    const clone = join(work, 'clone');
    copyWorkTree(clone);

    const pack = await run('npm', ['pack', '--json', '--pack-destination', work], {
      cwd: clone,
      env: cleanEnv(),
      limitMs: PACK_LIMIT_MS,
    });
    if (pack.code !== 0) {
      throw new Error(`npm pack failed (${pack.code}):\n${pack.stdout}\n${pack.stderr}`);
    }
    const results = JSON.parse(pack.stdout) as PackResult[];
    if (results[0] === undefined) throw new Error(`npm pack printed no result:\n${pack.stdout}`);
    packed = results[0];

    const prefix = join(work, 'prefix');
    // The README's command, with a prefix of our own and npm's cache instead of the network.
    const install = await run(
      'npm',
      [
        'install',
        '-g',
        '--allow-scripts=better-sqlite3',
        '--prefix',
        prefix,
        '--offline',
        '--no-audit',
        '--no-fund',
        join(work, packed.filename),
      ],
      {
        cwd: work,
        // Compile better-sqlite3 rather than let prebuild-install fetch a binary from GitHub:
        // the path of a host without that access, and no traffic off the machine.
        env: cleanEnv({
          ...(await nodeHeadersEnv(work)),
          npm_config_build_from_source: 'better-sqlite3',
        }),
        limitMs: INSTALL_LIMIT_MS,
      },
    );
    installOutput = install.stdout + install.stderr;
    if (install.code !== 0) {
      const hint = /ENOTCACHED/.test(installOutput)
        ? "npm's cache lacks what the tarball install resolves: run ./scripts/setup.sh (it fills it)\n"
        : '';
      throw new Error(`npm install -g failed (${install.code}):\n${hint}${installOutput}`);
    }
    installed = join(prefix, 'lib', 'node_modules', 'powbridge');
    // The installed command, found on PATH as a user's shell finds it.
    userEnv = cleanEnv({ PATH: `${join(prefix, 'bin')}:${process.env.PATH ?? ''}` });
    console.info(
      `install test: npm pack ${(pack.ms / 1000).toFixed(0)} s, npm install -g ${(install.ms / 1000).toFixed(0)} s`,
    );
  },
  PACK_LIMIT_MS + INSTALL_LIMIT_MS + 60_000,
);

afterAll(() => {
  for (const r of running) killGroup(r.child);
  if (work) rmSync(work, { recursive: true, force: true });
});

function powbridge(args: string[]): Promise<Finished> {
  return run('powbridge', args, { cwd: work, env: userEnv, limitMs: COMMAND_LIMIT_MS });
}

describe('the packed tarball', () => {
  it('carries the build, the kernels, the dashboard and the example config, and no sources or tests', () => {
    const paths = packed.files.map((f) => f.path);
    for (const needed of [
      'bin/powbridge.js',
      'dist/src/cli/main.js',
      'dist/workers/mine.js',
      'dist/workers/verify-share.js',
      'dist/browser/index.html',
      'dist/browser/mine.js',
      'dist/browser/mine-worker.js',
      'wasm/scrypt.wasm',
      'wasm/sha256d.wasm',
      'src/relay/dashboard/public/index.html',
      'config/relay.example.toml',
      'package.json',
    ]) {
      expect(paths).toContain(needed);
    }
    const extra = paths.filter(
      (p) =>
        p.endsWith('.ts') ||
        p.endsWith('.map') ||
        /^(test|bench|scripts|node_modules)\//.test(p) ||
        (p.startsWith('src/') && !p.startsWith('src/relay/dashboard/public/')),
    );
    expect(extra).toEqual([]);
  });

  it('installs with better-sqlite3 compiled and no install script left out', () => {
    const require = createRequire(join(installed, 'package.json'));
    const sqlite = dirname(require.resolve('better-sqlite3/package.json'));
    expect(existsSync(join(sqlite, 'build', 'Release', 'better_sqlite3.node'))).toBe(true);
    // npm 11 lists the packages whose install scripts it did not run; the README's flag covers all.
    expect(installOutput).not.toMatch(/install-scripts|not yet covered by allowScripts/);
  });
});

describe('the installed powbridge', () => {
  it('is on PATH and prints its help and version', async () => {
    const help = await powbridge(['--help']);
    expect(help.stderr).toBe('');
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: powbridge /);
    expect(help.stdout).toMatch(/relay \[options\]/);
    const shown = await powbridge(['--version']);
    expect(shown.code).toBe(0);
    expect(shown.stdout.trim()).toBe(version);
  });

  it('hashes the Litecoin genesis header with its kernels', async () => {
    const genesis = headerVectors().find((v) => v.chain === 'litecoin-mainnet' && v.height === 0);
    if (!genesis) throw new Error('no Litecoin genesis vector');
    const result = await powbridge(['hash', '--algorithm', 'scrypt', '--header', genesis.header]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`pow hash    ${genesis.powHash}`);
    expect(result.stdout).toContain(`block hash  ${genesis.hash}`);
  });

  it('runs a relay that serves /healthz and its dashboard, and a miner that mines for it', async () => {
    const pool = await ScriptedPool.start();
    try {
      pool.on('message', (m, c) => {
        if (m.method !== 'mining.authorize') return;
        setImmediate(() => {
          c.notify('mining.set_difficulty', [2 ** -6]);
          const ntime = Math.floor(Date.now() / 1000).toString(16);
          c.notify('mining.notify', notifyParams('install-job-1', true, ntime));
        });
      });
      const config = join(work, 'relay.toml');
      writeFileSync(
        config,
        [
          '[relay]',
          `dataDir = "${join(work, 'relay-data')}"`,
          '[source]',
          'type = "pool"',
          'algorithm = "scrypt"',
          '[[source.pools]]',
          `url = "${pool.url}"`,
          'user = "operator.install-test"',
          'password = "x"',
          // Abe–Okamoto keys are made at once; an RSA key needs two safe primes (0.1–10 s).
          '[tickets]',
          'scheme = "ao"',
          '',
        ].join('\n'),
      );
      const relay = start(
        'powbridge',
        ['relay', '--config', config, '--listen', '127.0.0.1:0'],
        work,
        userEnv,
      );
      await waitFor('relay listening', () => /listening on http:\S+/.test(relay.output()), 60_000);
      const url = /listening on (http:\S+)/.exec(relay.output())?.[1] ?? '';
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
      await waitFor(
        'relay ready (upstream live)',
        async () => (await fetch(`${url}/readyz`)).status === 200,
        30_000,
      );
      const page = await fetch(`${url}/`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('<html');
      // The charting library comes from the installed package's own node_modules.
      expect((await fetch(`${url}/dashboard/uplot.js`)).status).toBe(200);
      // The miner page: its bundles from dist/browser/, its kernel from wasm/.
      expect((await fetch(`${url}/mine`)).status).toBe(200);
      expect((await fetch(`${url}/mine/sha256d.wasm`)).status).toBe(200);

      const miner = start(
        'powbridge',
        [
          'mine',
          '--relay',
          `${url.replace('http', 'ws')}/v1/circuit`,
          '--donate',
          '--threads',
          '1',
        ],
        work,
        userEnv,
      );
      await waitFor(
        'a share from the installed miner',
        async () => {
          const status = (await (await fetch(`${url}/v1/status`)).json()) as {
            shares: { accepted: number };
          };
          return status.shares.accepted > 0;
        },
        60_000,
      );
      await stop(miner, 'SIGINT');
      expect(await stop(relay, 'SIGTERM')).toBe(0);
      expect(relay.output()).not.toMatch(/dist\/ is missing|better-sqlite3 is not built/);
    } finally {
      await pool.close();
    }
  }, 180_000);
});
