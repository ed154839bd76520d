import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../helpers/litecoind.js';

/**
 * A private Tor network on loopback from Debian's `tor` (docs/design.md §11), for the opt-in onion
 * test: 3 directory authorities, 3 relays, a client (SOCKS port, control port with a
 * password) and a service host (control port with cookie auth) for the relay's onion
 * service. `TestingTorNetwork 1`, every port bound to 127.0.0.1 and picked free.
 *
 * Start order matters for the cold-start time: authorities and relays first, until the
 * authorities' consensus lists every relay as an HSDir; only then the client and the
 * service host, which bootstrap from that consensus at once.
 *
 * Cleanup: `stop()` kills every tor and removes the temp directory; if the test process
 * dies first, the exit/signal hooks do it, and each torrc names this process as
 * __OwningControllerProcess, so a tor whose parent is SIGKILLed exits on its own.
 */

const execFileAsync = promisify(execFile);

export interface TorInstance {
  readonly name: string;
  readonly dir: string;
  readonly child: ChildProcess;
  /** The last notice-level log lines (stdout), for failure reports. */
  tail(): string;
}

export interface PrivateTorNetwork {
  readonly dir: string;
  /** socks5h://127.0.0.1:<port> of the client. */
  readonly socksUrl: string;
  readonly client: { socksPort: number; controlPort: number; password: string };
  /** The tor that hosts onion services (cookie auth on its control port). */
  readonly service: { controlPort: number; cookieFile: string };
  /** Milliseconds from start: relays in the consensus, client and service bootstrapped. */
  readonly timings: { consensusMs: number; bootstrappedMs: number };
  readonly instances: readonly TorInstance[];
  /** Every instance's recent log, for a failure report. */
  logs(): string;
  stop(): Promise<void>;
}

const AUTHORITIES = 3;
const RELAYS = 3;
const TAIL_LINES = 40;

/** Everything started, so the exit and signal hooks can clean up after a crash. */
const running = new Set<{ child: ChildProcess }>();
const tempDirs = new Set<string>();
let hooksInstalled = false;

function killEverythingNow(): void {
  for (const { child } of running) child.kill('SIGKILL');
  running.clear();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', killEverythingNow);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      killEverythingNow();
      process.off(signal, onSignal);
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

async function freePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Lines every instance shares: the test network, its authorities, quick shutdown. */
function commonTorrc(name: string, dir: string, authorityLines: string[]): string[] {
  return [
    'TestingTorNetwork 1',
    // Rapid-bootstrap settings (as chutney uses): fine for a throwaway network only.
    'AssumeReachable 1',
    'PathsNeededToBuildCircuits 0.25',
    `DataDirectory ${dir}`,
    `Nickname ${name}`,
    'RunAsDaemon 0',
    'ShutdownWaitLength 0',
    'Log notice stdout',
    // Tor exits by itself when this (the test) process is gone, even after a SIGKILL.
    `__OwningControllerProcess ${process.pid}`,
    ...authorityLines,
  ];
}

const AUTHORITY_TORRC = [
  'AuthoritativeDirectory 1',
  'V3AuthoritativeDirectory 1',
  'ContactInfo auth@powbridge.test',
  'ExitPolicy reject *:*',
  // Vote every 10 s (5 s for the first consensus) instead of every hour.
  'TestingV3AuthInitialVotingInterval 5',
  'TestingV3AuthInitialVoteDelay 2',
  'TestingV3AuthInitialDistDelay 2',
  'V3AuthVotingInterval 10',
  'V3AuthVoteDelay 2',
  'V3AuthDistDelay 2',
  'V3AuthNIntervalsValid 2',
  // Give every relay the flags that would otherwise need hours of uptime.
  'TestingDirAuthVoteExit *',
  'TestingDirAuthVoteGuard *',
  'TestingDirAuthVoteHSDir *',
  'TestingMinExitFlagThreshold 0',
];

function startTor(name: string, dir: string, torrc: string[]): TorInstance {
  installHooks();
  const file = join(dir, 'torrc');
  writeFileSync(file, `${torrc.join('\n')}\n`);
  const child = spawn('tor', ['-f', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  const entry = { child };
  running.add(entry);
  child.once('exit', () => running.delete(entry));
  const lines: string[] = [];
  let partial = '';
  const collect = (chunk: Buffer) => {
    const text = partial + chunk.toString('utf8');
    const parts = text.split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts);
    if (lines.length > 4 * TAIL_LINES) lines.splice(0, lines.length - TAIL_LINES);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  return {
    name,
    dir,
    child,
    tail: () => lines.slice(-TAIL_LINES).join('\n'),
  };
}

/** Resolve when `instance` logs a line matching `pattern` (checked on what arrives next). */
function waitForLog(instance: TorInstance, pattern: RegExp, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`${instance.name}: no "${pattern.source}" within ${timeoutMs} ms`));
    }, timeoutMs);
    const onData = (chunk: Buffer) => {
      seen = (seen + chunk.toString('utf8')).slice(-4096);
      if (pattern.test(seen)) {
        cleanup();
        resolve();
      }
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new Error(`${instance.name}: tor exited (${code}) before "${pattern.source}"`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      instance.child.stdout?.off('data', onData);
      instance.child.off('exit', onExit);
    };
    instance.child.stdout?.on('data', onData);
    instance.child.once('exit', onExit);
  });
}

/** Authority keys (tor-gencert) and both fingerprints, for the DirAuthority lines. */
async function makeAuthority(
  name: string,
  dir: string,
  orPort: number,
  dirPort: number,
): Promise<string> {
  const keys = join(dir, 'keys');
  mkdirSync(keys, { recursive: true, mode: 0o700 });
  const gencert = spawn(
    'tor-gencert',
    [
      '--create-identity-key',
      '-m',
      '12',
      '-a',
      `127.0.0.1:${dirPort}`,
      '-i',
      join(keys, 'authority_identity_key'),
      '-s',
      join(keys, 'authority_signing_key'),
      '-c',
      join(keys, 'authority_certificate'),
      '--passphrase-fd',
      '0',
    ],
    { stdio: ['pipe', 'ignore', 'pipe'] },
  );
  // An empty passphrase: these keys live for one test run.
  gencert.stdin?.end('\n');
  const code = await new Promise<number | null>((resolve) => gencert.once('exit', resolve));
  if (code !== 0) throw new Error(`tor-gencert for ${name} failed (${code})`);
  const certificate = readFileSync(join(keys, 'authority_certificate'), 'utf8');
  const v3ident = /^fingerprint ([0-9A-F]{40})$/m.exec(certificate)?.[1];
  if (!v3ident) throw new Error(`${name}: no fingerprint in authority_certificate`);

  // The relay identity key (and its fingerprint) without starting the network.
  const listing = join(dir, 'torrc-fingerprint');
  writeFileSync(
    listing,
    `DataDirectory ${dir}\nNickname ${name}\nORPort 127.0.0.1:${orPort}\nSocksPort 0\n`,
  );
  await execFileAsync('tor', ['--list-fingerprint', '--quiet', '-f', listing]);
  const fingerprint = /^\S+ ([0-9A-F]{40})$/m.exec(
    readFileSync(join(dir, 'fingerprint'), 'utf8'),
  )?.[1];
  if (!fingerprint) throw new Error(`${name}: tor --list-fingerprint gave no fingerprint`);
  return `DirAuthority ${name} orport=${orPort} no-v2 v3ident=${v3ident} 127.0.0.1:${dirPort} ${fingerprint}`;
}

/** The current consensus from an authority's DirPort, or null while there is none. */
async function consensus(dirPort: number): Promise<string | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${dirPort}/tor/status-vote/current/consensus`, {
      signal: AbortSignal.timeout(2000),
    });
    return res.ok ? await res.text() : null;
  } catch {
    return null;
  }
}

/** Routers the consensus lists with the HSDir flag (onion descriptors need them). */
function hsDirCount(document: string): number {
  return document.split('\n').filter((l) => l.startsWith('s ') && l.includes(' HSDir')).length;
}

export async function startPrivateTorNetwork(
  options: { timeoutMs?: number; log?: (line: string) => void } = {},
): Promise<PrivateTorNetwork> {
  installHooks();
  const log = options.log ?? (() => undefined);
  const deadline = Date.now() + (options.timeoutMs ?? 240_000);
  const left = () => Math.max(1000, deadline - Date.now());
  const started = Date.now();
  const dir = mkdtempSync(join(tmpdir(), 'powbridge-tornet-'));
  tempDirs.add(dir);
  const instances: TorInstance[] = [];
  const stop = async () => {
    await Promise.all(
      instances.map(
        (i) =>
          new Promise<void>((resolve) => {
            if (i.child.exitCode !== null || i.child.signalCode !== null) return resolve();
            i.child.once('exit', () => resolve());
            i.child.kill('SIGTERM');
            // ShutdownWaitLength 0: tor stops at once; SIGKILL if it does not.
            setTimeout(() => i.child.kill('SIGKILL'), 5000).unref();
          }),
      ),
    );
    rmSync(dir, { recursive: true, force: true });
    tempDirs.delete(dir);
  };
  const logs = () => instances.map((i) => `--- ${i.name} ---\n${i.tail()}`).join('\n');

  try {
    const ports = await freePorts(AUTHORITIES * 2 + RELAYS + 3);
    const take = () => ports.shift() as number;
    const authorities = Array.from({ length: AUTHORITIES }, (_, i) => ({
      name: `auth${i}`,
      dir: join(dir, `auth${i}`),
      orPort: take(),
      dirPort: take(),
    }));
    const authorityLines = await Promise.all(
      authorities.map((a) => {
        mkdirSync(a.dir, { mode: 0o700 });
        return makeAuthority(a.name, a.dir, a.orPort, a.dirPort);
      }),
    );
    for (const a of authorities) {
      instances.push(
        startTor(a.name, a.dir, [
          ...commonTorrc(a.name, a.dir, authorityLines),
          'SocksPort 0',
          'Address 127.0.0.1',
          `ORPort 127.0.0.1:${a.orPort}`,
          `DirPort 127.0.0.1:${a.dirPort}`,
          ...AUTHORITY_TORRC,
        ]),
      );
    }
    for (let i = 0; i < RELAYS; i++) {
      const name = `relay${i}`;
      const relayDir = join(dir, name);
      mkdirSync(relayDir, { mode: 0o700 });
      instances.push(
        startTor(name, relayDir, [
          ...commonTorrc(name, relayDir, authorityLines),
          'SocksPort 0',
          'Address 127.0.0.1',
          `ORPort 127.0.0.1:${take()}`,
          'ExitRelay 0',
          'ExitPolicy reject *:*',
        ]),
      );
    }
    log(`tor network: ${AUTHORITIES} authorities and ${RELAYS} relays started in ${dir}`);

    // Wait for a consensus that lists every router as HSDir.
    const routers = AUTHORITIES + RELAYS;
    const firstDirPort = (authorities[0] as { dirPort: number }).dirPort;
    for (;;) {
      const document = await consensus(firstDirPort);
      if (document && hsDirCount(document) >= routers) break;
      for (const i of instances) {
        if (i.child.exitCode !== null) throw new Error(`${i.name}: tor exited early`);
      }
      if (Date.now() > deadline) throw new Error('no consensus listing every relay in time');
      await sleep(1000);
    }
    const consensusMs = Date.now() - started;
    log(`tor network: consensus with ${routers} HSDirs after ${consensusMs} ms`);

    const password = 'powbridge-test-control';
    const { stdout: hashed } = await execFileAsync('tor', ['--quiet', '--hash-password', password]);
    const clientDir = join(dir, 'client');
    const serviceDir = join(dir, 'service');
    mkdirSync(clientDir, { mode: 0o700 });
    mkdirSync(serviceDir, { mode: 0o700 });
    const socksPort = take();
    const clientControl = take();
    const serviceControl = take();
    const client = startTor('client', clientDir, [
      ...commonTorrc('client', clientDir, authorityLines),
      `SocksPort 127.0.0.1:${socksPort}`,
      `ControlPort 127.0.0.1:${clientControl}`,
      `HashedControlPassword ${hashed.trim()}`,
    ]);
    const service = startTor('service', serviceDir, [
      ...commonTorrc('service', serviceDir, authorityLines),
      'SocksPort 0',
      `ControlPort 127.0.0.1:${serviceControl}`,
      'CookieAuthentication 1',
    ]);
    instances.push(client, service);
    await Promise.all([client, service].map((i) => waitForLog(i, /Bootstrapped 100%/, left())));
    const bootstrappedMs = Date.now() - started;
    log(`tor network: client and service host bootstrapped after ${bootstrappedMs} ms`);

    return {
      dir,
      socksUrl: `socks5h://127.0.0.1:${socksPort}`,
      client: { socksPort, controlPort: clientControl, password },
      service: { controlPort: serviceControl, cookieFile: join(serviceDir, 'control_auth_cookie') },
      timings: { consensusMs, bootstrappedMs },
      instances,
      logs,
      stop,
    };
  } catch (err) {
    const report = logs();
    await stop();
    throw new Error(`${(err as Error).message}\n${report}`);
  }
}
