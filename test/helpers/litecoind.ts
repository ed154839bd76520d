import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createNetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Real `litecoind -regtest` nodes for integration tests. Each node gets a fresh temp dir and
 * free loopback ports; every node after the first connects to the first, because Litecoin
 * Core refuses getblocktemplate without a peer. The RPC client here is deliberately separate
 * from src/sources/node-rpc.ts so the tests do not check that code with itself.
 */

export type RegtestAuth = 'password' | 'cookie';

export interface RegtestNodeOptions {
  /** 'password': rpcuser/rpcpassword in litecoin.conf; 'cookie': the node writes .cookie. */
  auth?: RegtestAuth;
  /** Extra litecoin.conf lines for the [regtest] section. */
  extraConfig?: readonly string[];
}

export interface RegtestNode {
  readonly index: number;
  readonly datadir: string;
  readonly rpcPort: number;
  readonly p2pPort: number;
  readonly rpcUrl: string;
  readonly auth: { user: string; password: string } | { cookieFile: string };
  rpc(method: string, ...params: unknown[]): Promise<unknown>;
  /** RPC against a wallet endpoint (/wallet/<name>). */
  walletRpc(wallet: string, method: string, ...params: unknown[]): Promise<unknown>;
  stop(): Promise<void>;
}

export interface RegtestNetwork {
  readonly nodes: readonly RegtestNode[];
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

/** Children still running; killed at exit if a test run dies without cleaning up. */
const running = new Set<{ child: ChildProcess; datadir: string }>();
let exitHookInstalled = false;

function killAllNow(): void {
  for (const { child, datadir } of running) {
    child.kill('SIGKILL');
    rmSync(datadir, { recursive: true, force: true });
  }
  running.clear();
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', killAllNow);
  // A signal ends the process without 'exit': clean up, then let the signal do its job.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      killAllNow();
      process.off(signal, onSignal);
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

/** A port nobody listens on right now (bind port 0, read it, close). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createNetServer();
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

/** Minimal JSON-RPC 1.0 POST; throws with the node's error message on failure. */
export async function rawRpc(
  url: string,
  authHeader: string,
  method: string,
  params: readonly unknown[],
  timeoutMs = 30_000,
): Promise<unknown> {
  const body = JSON.stringify({ jsonrpc: '1.0', id: 1, method, params });
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: authHeader },
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: { result?: unknown; error?: { code: number; message: string } | null };
          try {
            parsed = JSON.parse(text) as typeof parsed;
          } catch {
            reject(new Error(`${method}: HTTP ${res.statusCode} ${text.slice(0, 200)}`));
            return;
          }
          if (parsed.error) {
            const err = new Error(`${method}: ${parsed.error.message} (${parsed.error.code})`);
            Object.assign(err, { code: parsed.error.code });
            reject(err);
          } else resolve(parsed.result ?? null);
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method}: timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

interface PortPlan {
  rpcPort: number;
  p2pPort: number;
}

async function startNode(
  index: number,
  ports: PortPlan,
  connectTo: number | null,
  options: RegtestNodeOptions,
): Promise<RegtestNode> {
  installExitHook();
  const datadir = mkdtempSync(join(tmpdir(), `powbridge-ltc${index}-`));
  const authMode = options.auth ?? 'password';
  const user = 'powbridge';
  const password = randomBytes(16).toString('hex');
  const lines = [
    'regtest=1',
    'server=1',
    '[regtest]',
    'listen=1',
    `bind=127.0.0.1:${ports.p2pPort}`,
    `port=${ports.p2pPort}`,
    `rpcport=${ports.rpcPort}`,
    `rpcbind=127.0.0.1:${ports.rpcPort}`,
    'rpcallowip=127.0.0.1',
    'listenonion=0',
    'discover=0',
    'dnsseed=0',
    'upnp=0',
    'natpmp=0',
    'printtoconsole=0',
    // MWEB activates by itself around height 431 on regtest and block creation then fails.
    'vbparams=mweb:4102444800:4102444801',
    'fallbackfee=0.0001',
    ...(connectTo === null ? [] : [`connect=127.0.0.1:${connectTo}`]),
    ...(authMode === 'password' ? [`rpcuser=${user}`, `rpcpassword=${password}`] : []),
    ...(options.extraConfig ?? []),
  ];
  writeFileSync(join(datadir, 'litecoin.conf'), `${lines.join('\n')}\n`);

  const child = spawn('litecoind', [`-datadir=${datadir}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const entry = { child, datadir };
  running.add(entry);
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString('utf8');
  });
  let exited = false;
  const exitedPromise = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      running.delete(entry);
      resolve();
    }),
  );

  const rpcUrl = `http://127.0.0.1:${ports.rpcPort}/`;
  const cookieFile = join(datadir, 'regtest', '.cookie');
  // Cookie read on every call: the node rewrites it whenever it restarts.
  const authHeader = (): string => {
    if (authMode === 'password') return basic(user, password);
    const [cookieUser = '', ...rest] = readFileSync(cookieFile, 'utf8').trim().split(':');
    return basic(cookieUser, rest.join(':'));
  };
  const node: RegtestNode = {
    index,
    datadir,
    rpcPort: ports.rpcPort,
    p2pPort: ports.p2pPort,
    rpcUrl,
    auth: authMode === 'password' ? { user, password } : { cookieFile },
    rpc: (method, ...params) => rawRpc(rpcUrl, authHeader(), method, params),
    walletRpc: (wallet, method, ...params) =>
      rawRpc(`${rpcUrl}wallet/${encodeURIComponent(wallet)}`, authHeader(), method, params),
    stop: async () => {
      if (!exited) {
        await node.rpc('stop').catch(() => undefined);
        const killer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
        await exitedPromise;
        clearTimeout(killer);
      }
      rmSync(datadir, { recursive: true, force: true });
    },
  };

  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (exited) {
      rmSync(datadir, { recursive: true, force: true });
      throw new Error(`litecoind #${index} exited during startup: ${stderr.trim()}`);
    }
    try {
      await node.rpc('getblockchaininfo');
      return node;
    } catch (err) {
      // ECONNREFUSED before the RPC server binds, a missing cookie, or -28 while warming up.
      if (Date.now() > deadline) {
        await node.stop();
        throw new Error(
          `litecoind #${index} RPC not ready after ${READY_TIMEOUT_MS} ms: ${String(err)}`,
        );
      }
      await sleep(100);
    }
  }
}

/**
 * Start `count` regtest nodes; node i > 0 has `connect=` to node 0. Waits until every
 * follower is connected so getblocktemplate works on node 0 right away.
 */
export async function startRegtestNetwork(
  nodeOptions: readonly RegtestNodeOptions[],
): Promise<RegtestNetwork> {
  const plans: PortPlan[] = [];
  const taken = new Set<number>();
  for (let i = 0; i < nodeOptions.length * 2; i++) {
    let port = await freePort();
    while (taken.has(port)) port = await freePort();
    taken.add(port);
  }
  const ports = [...taken];
  for (let i = 0; i < nodeOptions.length; i++) {
    plans.push({ rpcPort: ports[2 * i] as number, p2pPort: ports[2 * i + 1] as number });
  }
  const nodes: RegtestNode[] = [];
  const stopAll = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => n.stop()));
  };
  try {
    const first = await startNode(0, plans[0] as PortPlan, null, nodeOptions[0] ?? {});
    nodes.push(first);
    const followers = await Promise.all(
      nodeOptions
        .slice(1)
        .map((opts, i) => startNode(i + 1, plans[i + 1] as PortPlan, first.p2pPort, opts)),
    );
    nodes.push(...followers);
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while ((await first.rpc('getconnectioncount')) !== nodes.length - 1) {
      if (Date.now() > deadline) throw new Error('regtest nodes did not connect to each other');
      await sleep(100);
    }
  } catch (err) {
    await stopAll();
    throw err;
  }
  return { nodes, stop: stopAll };
}

/** Poll `check` until it returns true (bounded); for conditions on a real node. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** A recorded JSON-RPC request that went through an RpcRecorder. */
export interface RecordedCall {
  method: string;
  params: unknown[];
}

export interface RpcRecorder {
  readonly url: string;
  readonly calls: RecordedCall[];
  /** Cut the connections open right now (in-flight calls fail), keep accepting new ones. */
  cut(): void;
  /** Refuse connections and cut open ones, as if the node went away. */
  pause(): Promise<void>;
  /** Listen again on the same port. */
  resume(): Promise<void>;
  close(): Promise<void>;
}

/**
 * An HTTP proxy in front of a node's RPC port that records every request. Lets a test see
 * exactly what the code under test sent (e.g. the submitblock hex) and simulate the node
 * going down without killing it.
 */
export async function startRpcRecorder(targetUrl: string): Promise<RpcRecorder> {
  const port = await freePort();
  const calls: RecordedCall[] = [];
  const sockets = new Set<Socket>();
  let server: Server | null = null;

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      try {
        const parsed = JSON.parse(body.toString('utf8')) as { method?: unknown; params?: unknown };
        if (typeof parsed.method === 'string') {
          calls.push({
            method: parsed.method,
            params: Array.isArray(parsed.params) ? parsed.params : [],
          });
        }
      } catch {
        // Not JSON: forward as is; the node answers for itself.
      }
      const upstream = httpRequest(
        new URL(req.url ?? '/', targetUrl),
        { method: req.method, headers: req.headers },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      upstream.on('error', () => res.destroy());
      res.on('close', () => upstream.destroy());
      upstream.end(body);
    });
  };

  const listen = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const s = createServer(handle);
      s.on('connection', (socket) => {
        sockets.add(socket);
        socket.on('close', () => sockets.delete(socket));
      });
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => {
        server = s;
        resolve();
      });
    });

  const shut = (): Promise<void> =>
    new Promise((resolve) => {
      const s = server;
      server = null;
      if (s === null) {
        resolve();
        return;
      }
      for (const socket of sockets) socket.destroy();
      s.close(() => resolve());
    });

  await listen();
  return {
    url: `http://127.0.0.1:${port}/`,
    calls,
    cut: () => {
      for (const socket of sockets) socket.destroy();
    },
    pause: shut,
    resume: listen,
    close: shut,
  };
}
