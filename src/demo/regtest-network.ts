import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { NodeRpc, type RpcAuth } from '../sources/node-rpc.js';

/**
 * Real `litecoind -regtest` nodes on loopback, for the demo and the integration tests. Each
 * node gets its own data directory and free loopback ports; every node after the first
 * connects to the first, because Litecoin Core refuses getblocktemplate without a peer
 * (docs/design.md §3.2). Nothing listens beyond 127.0.0.1 and nothing is looked up on the network.
 *
 * Stopping is the caller's job (`stop`); if the process exits without it, the nodes still
 * running are killed and their directories removed on the way out, so a crash leaves no
 * daemon behind.
 */

export type RegtestAuth = 'password' | 'cookie';

export interface RegtestNodeOptions {
  /** 'password': rpcuser/rpcpassword in litecoin.conf; 'cookie': the node writes .cookie. */
  auth?: RegtestAuth;
  /** Extra litecoin.conf lines for the [regtest] section. */
  extraConfig?: readonly string[];
}

export interface RegtestNetworkOptions {
  /** The litecoind executable (default: `litecoind` from PATH). */
  binary?: string;
  /**
   * Where the nodes' data directories go (`litecoind-<index>` inside it); default: a fresh
   * temporary directory per node. The directories are removed when the nodes stop.
   */
  baseDir?: string;
}

export interface RegtestNode {
  readonly index: number;
  readonly datadir: string;
  readonly rpcPort: number;
  readonly p2pPort: number;
  readonly rpcUrl: string;
  readonly auth: RpcAuth;
  /** Process id of the daemon. */
  readonly pid: number;
  /** JSON-RPC to the node; every answer is checked by the caller's schema. */
  readonly rpc: NodeRpc;
  /** JSON-RPC to one of the node's wallets (`/wallet/<name>`). */
  wallet(name: string): NodeRpc;
  /** Ask the node to shut down (killed if it takes too long), then remove its directory. */
  stop(): Promise<void>;
}

export interface RegtestNetwork {
  readonly nodes: readonly RegtestNode[];
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;
const PROBE_TIMEOUT_MS = 2_000;

const blockchainInfo = z.object({ chain: z.string(), blocks: z.number().int().nonnegative() });
const connectionCount = z.number().int().nonnegative();

/** Daemons still running, killed at exit if their owner never stopped them. */
const running = new Set<{ child: ChildProcess; datadir: string }>();
let exitHookInstalled = false;

/**
 * SIGKILL every node still running and remove its directory, synchronously. For last-resort
 * paths (process exit, a signal handler that must not wait); `stop` is the orderly way.
 */
export function killRegtestNodesNow(): void {
  for (const { child, datadir } of running) {
    child.kill('SIGKILL');
    rmSync(datadir, { recursive: true, force: true });
  }
  running.clear();
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', killRegtestNodesNow);
}

/** A loopback port nobody listens on right now (bind port 0, read it, close). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('no port'));
        return;
      }
      server.close(() => resolve(address.port));
    });
  });
}

/** `count` distinct free ports (freePort alone may hand out the same one twice). */
async function distinctFreePorts(count: number): Promise<number[]> {
  const taken = new Set<number>();
  while (taken.size < count) taken.add(await freePort());
  return [...taken];
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

interface PortPlan {
  rpcPort: number;
  p2pPort: number;
}

function configLines(
  ports: PortPlan,
  connectTo: number | null,
  auth: { user: string; password: string } | null,
  extra: readonly string[],
): string[] {
  return [
    'regtest=1',
    'server=1',
    '[regtest]',
    'listen=1',
    `bind=127.0.0.1:${ports.p2pPort}`,
    `port=${ports.p2pPort}`,
    `rpcport=${ports.rpcPort}`,
    `rpcbind=127.0.0.1:${ports.rpcPort}`,
    'rpcallowip=127.0.0.1',
    // Loopback only: no onion, no DNS seeds, no port mapping, no address discovery.
    'listenonion=0',
    'discover=0',
    'dnsseed=0',
    'upnp=0',
    'natpmp=0',
    'printtoconsole=0',
    // MWEB activates by itself at height 432 on regtest, and blocks then need a peg-in
    // (docs/design.md §3.2): kept off here; tests that exercise MWEB override it.
    'vbparams=mweb:4102444800:4102444801',
    'fallbackfee=0.0001',
    ...(connectTo === null ? [] : [`connect=127.0.0.1:${connectTo}`]),
    ...(auth ? [`rpcuser=${auth.user}`, `rpcpassword=${auth.password}`] : []),
    ...extra,
  ];
}

function makeDatadir(index: number, baseDir: string | undefined): string {
  if (baseDir === undefined) return mkdtempSync(join(tmpdir(), `powbridge-ltc${index}-`));
  const dir = join(baseDir, `litecoind-${index}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

async function startNode(
  index: number,
  ports: PortPlan,
  connectTo: number | null,
  options: RegtestNodeOptions,
  network: RegtestNetworkOptions,
): Promise<RegtestNode> {
  installExitHook();
  const datadir = makeDatadir(index, network.baseDir);
  const password =
    (options.auth ?? 'password') === 'password'
      ? { user: 'powbridge', password: randomBytes(16).toString('hex') }
      : null;
  const lines = configLines(ports, connectTo, password, options.extraConfig ?? []);
  writeFileSync(join(datadir, 'litecoin.conf'), `${lines.join('\n')}\n`, { mode: 0o600 });

  const child = spawn(network.binary ?? 'litecoind', [`-datadir=${datadir}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const entry = { child, datadir };
  running.add(entry);
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString('utf8');
  });
  let exited = false;
  const exitedPromise = new Promise<void>((resolve) => {
    const onGone = (): void => {
      exited = true;
      running.delete(entry);
      resolve();
    };
    child.once('exit', onGone);
    // Spawn failures (ENOENT, EACCES) come as 'error' and never as 'exit'.
    child.once('error', (err) => {
      stderr += err.message;
      onGone();
    });
  });

  const rpcUrl = `http://127.0.0.1:${ports.rpcPort}/`;
  const auth: RpcAuth = password ?? { cookieFile: join(datadir, 'regtest', '.cookie') };
  const rpc = new NodeRpc({ url: rpcUrl, auth });
  const stop = async (): Promise<void> => {
    if (!exited) {
      await rpc.call('stop', [], z.unknown()).catch(() => undefined);
      const killer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exitedPromise;
      clearTimeout(killer);
    }
    rmSync(datadir, { recursive: true, force: true });
  };
  const node: RegtestNode = {
    index,
    datadir,
    rpcPort: ports.rpcPort,
    p2pPort: ports.p2pPort,
    rpcUrl,
    auth,
    pid: child.pid ?? -1,
    rpc,
    wallet: (name) => new NodeRpc({ url: `${rpcUrl}wallet/${encodeURIComponent(name)}`, auth }),
    stop,
  };

  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (exited) {
      rmSync(datadir, { recursive: true, force: true });
      throw new Error(`litecoind #${index} exited during startup: ${stderr.trim()}`);
    }
    try {
      await rpc.call('getblockchaininfo', [], blockchainInfo, { timeoutMs: PROBE_TIMEOUT_MS });
      return node;
    } catch (err) {
      // Refused before the RPC server binds, no cookie yet, or -28 while warming up.
      if (Date.now() > deadline) {
        await stop();
        throw new Error(
          `litecoind #${index} RPC not ready after ${READY_TIMEOUT_MS} ms: ${String(err)}`,
        );
      }
      await sleep(100);
    }
  }
}

/**
 * Start one regtest node per entry of `nodeOptions`; node i > 0 has `connect=` to node 0.
 * Resolves once every follower is connected, so getblocktemplate works on node 0 right away
 * (after one block has been mined to leave initial block download). On failure every node
 * started so far is stopped before the error is thrown.
 */
export async function startRegtestNetwork(
  nodeOptions: readonly RegtestNodeOptions[],
  options: RegtestNetworkOptions = {},
): Promise<RegtestNetwork> {
  if (nodeOptions.length === 0) throw new RangeError('at least one node');
  const ports = await distinctFreePorts(nodeOptions.length * 2);
  const plans: PortPlan[] = nodeOptions.map((_, i) => ({
    rpcPort: ports[2 * i] as number,
    p2pPort: ports[2 * i + 1] as number,
  }));
  const nodes: RegtestNode[] = [];
  const stopAll = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => n.stop()));
  };
  try {
    const first = await startNode(0, plans[0] as PortPlan, null, nodeOptions[0] ?? {}, options);
    nodes.push(first);
    const followers = await Promise.allSettled(
      nodeOptions
        .slice(1)
        .map((opts, i) => startNode(i + 1, plans[i + 1] as PortPlan, first.p2pPort, opts, options)),
    );
    for (const result of followers) if (result.status === 'fulfilled') nodes.push(result.value);
    const failed = followers.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while ((await first.rpc.call('getconnectioncount', [], connectionCount)) < nodes.length - 1) {
      if (Date.now() > deadline) throw new Error('regtest nodes did not connect to each other');
      await sleep(100);
    }
  } catch (err) {
    await stopAll();
    throw err;
  }
  return { nodes, stop: stopAll };
}
