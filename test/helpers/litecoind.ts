import { readFileSync } from 'node:fs';
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { Socket } from 'node:net';
import { z } from 'zod';
import {
  freePort,
  killRegtestNodesNow,
  type RegtestNetworkOptions,
  type RegtestNode as DaemonNode,
  type RegtestNodeOptions,
  startRegtestNetwork as startDaemons,
} from '../../src/demo/regtest-network.js';

/**
 * Real `litecoind -regtest` nodes for integration tests: the daemons are started and stopped
 * by src/demo/regtest-network.ts (one implementation for the demo and the tests); this file
 * adds what only tests need. Its RPC client is deliberately separate from
 * src/sources/node-rpc.ts so the tests do not check that code with itself: every call a test
 * makes (`rpc`, `walletRpc`) goes through `rawRpc` below.
 */

export { freePort };
export type { RegtestAuth, RegtestNodeOptions } from '../../src/demo/regtest-network.js';

export interface RegtestNode extends Omit<DaemonNode, 'rpc' | 'wallet'> {
  rpc(method: string, ...params: unknown[]): Promise<unknown>;
  /** RPC against a wallet endpoint (/wallet/<name>). */
  walletRpc(wallet: string, method: string, ...params: unknown[]): Promise<unknown>;
}

export interface RegtestNetwork {
  readonly nodes: readonly RegtestNode[];
  stop(): Promise<void>;
}

let signalHookInstalled = false;

/** A test run killed by a signal still takes its daemons with it; then the signal goes on. */
function installSignalHook(): void {
  if (signalHookInstalled) return;
  signalHookInstalled = true;
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      killRegtestNodesNow();
      process.off(signal, onSignal);
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
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

/** Basic auth for a node; the cookie is read on every call (the node rewrites it on restart). */
function authHeader(auth: DaemonNode['auth']): string {
  if (!('cookieFile' in auth)) return basic(auth.user, auth.password);
  const [cookieUser = '', ...rest] = readFileSync(auth.cookieFile, 'utf8').trim().split(':');
  return basic(cookieUser, rest.join(':'));
}

function forTests(node: DaemonNode): RegtestNode {
  return {
    index: node.index,
    datadir: node.datadir,
    rpcPort: node.rpcPort,
    p2pPort: node.p2pPort,
    rpcUrl: node.rpcUrl,
    auth: node.auth,
    pid: node.pid,
    stop: () => node.stop(),
    rpc: (method, ...params) => rawRpc(node.rpcUrl, authHeader(node.auth), method, params),
    walletRpc: (wallet, method, ...params) =>
      rawRpc(
        `${node.rpcUrl}wallet/${encodeURIComponent(wallet)}`,
        authHeader(node.auth),
        method,
        params,
      ),
  };
}

/**
 * Start `count` regtest nodes; node i > 0 has `connect=` to node 0. Waits until every
 * follower is connected so getblocktemplate works on node 0 right away.
 */
export async function startRegtestNetwork(
  nodeOptions: readonly RegtestNodeOptions[],
  options: RegtestNetworkOptions = {},
): Promise<RegtestNetwork> {
  installSignalHook();
  const network = await startDaemons(nodeOptions, options);
  return { nodes: network.nodes.map(forTests), stop: () => network.stop() };
}

/**
 * An `extraConfig` line that lets MWEB activate on Litecoin Core's own regtest schedule (at
 * MWEB_ACTIVATION_HEIGHT): Core's regtest deployment parameters, written after the line
 * src/demo/regtest-network.ts adds to keep MWEB off; litecoind applies `vbparams` lines in
 * order, so the last one counts. Every node of the network needs it, or they disagree on
 * the rules.
 */
export const MWEB_ACTIVATES = 'vbparams=mweb:1601450001:9223372036854775807';
/** Three 144-block BIP9 periods: started, locked in, active. */
export const MWEB_ACTIVATION_HEIGHT = 432;

/**
 * Take a node started with MWEB_ACTIVATES to the eve of MWEB: mine to the height before
 * activation (paying `wallet`), then peg 1 LTC in to an MWEB address of that wallet. Core
 * cannot build the activation block without a waiting peg-in (`bad-txns-vin-empty`);
 * docs/design.md §3.2. Returns the peg-in's txid.
 */
export async function prepareMwebActivation(node: RegtestNode, wallet: string): Promise<string> {
  const address = z.string().parse(await node.walletRpc(wallet, 'getnewaddress'));
  const height = z.number().parse(await node.rpc('getblockcount'));
  const missing = MWEB_ACTIVATION_HEIGHT - 1 - height;
  if (missing < 0) throw new Error(`node is at height ${height}, past MWEB activation`);
  if (missing > 0) await node.rpc('generatetoaddress', missing, address);
  const mwebAddress = z.string().parse(await node.walletRpc(wallet, 'getnewaddress', '', 'mweb'));
  return z.string().parse(await node.walletRpc(wallet, 'sendtoaddress', mwebAddress, 1));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
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
  /** The node's answer (the JSON-RPC `result`), once it has come back whole. */
  result?: unknown;
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
      let call: RecordedCall | null = null;
      try {
        const parsed = JSON.parse(body.toString('utf8')) as { method?: unknown; params?: unknown };
        if (typeof parsed.method === 'string') {
          call = {
            method: parsed.method,
            params: Array.isArray(parsed.params) ? parsed.params : [],
          };
          calls.push(call);
        }
      } catch {
        // Not JSON: forward as is; the node answers for itself.
      }
      const upstream = httpRequest(
        new URL(req.url ?? '/', targetUrl),
        { method: req.method, headers: req.headers },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          const answer: Buffer[] = [];
          up.on('data', (c: Buffer) => answer.push(c));
          up.on('end', () => {
            if (call === null) return;
            try {
              const parsed = JSON.parse(Buffer.concat(answer).toString('utf8')) as {
                result?: unknown;
              };
              call.result = parsed.result;
            } catch {
              // Not JSON: nothing to record.
            }
          });
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
