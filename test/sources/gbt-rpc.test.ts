import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { NodeRpc, NodeRpcError, RpcCallError, displayUrl } from '../../src/sources/node-rpc.js';
import { freePort } from '../helpers/litecoind.js';

/**
 * NodeRpc against a scripted HTTP server: each method name picks a canned behaviour, so every
 * failure path can be produced on demand (the regtest test covers the real node).
 */

interface Seen {
  method: string;
  authorization: string | undefined;
}

const seen: Seen[] = [];
let server: Server;
let url: string;
let dir: string;

function reply(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(typeof body === 'string' ? body : JSON.stringify(body));
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const call = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
      id: number;
      method: string;
      params: unknown[];
    };
    seen.push({ method: call.method, authorization: req.headers.authorization });
    const expected = `Basic ${Buffer.from('alice:s3cret').toString('base64')}`;
    const cookie = `Basic ${Buffer.from('__cookie__:c00kie').toString('base64')}`;
    if (req.headers.authorization !== expected && req.headers.authorization !== cookie) {
      // Core answers a bad password with an empty 401.
      res.writeHead(401);
      res.end();
      return;
    }
    switch (call.method) {
      case 'echo':
        return reply(res, 200, { result: call.params, error: null, id: call.id });
      case 'fail':
        return reply(res, 500, {
          result: null,
          error: { code: -8, message: 'Invalid parameter' },
          id: call.id,
        });
      case 'missing':
        return reply(res, 404, {
          result: null,
          error: { code: -32601, message: 'Method not found' },
          id: call.id,
        });
      case 'busy':
        res.writeHead(503);
        res.end('Work queue depth exceeded');
        return;
      case 'garbage':
        return reply(res, 200, '{"result": ');
      case 'slow':
        setTimeout(() => reply(res, 200, { result: 1, error: null, id: call.id }), 600);
        return;
      case 'hangup':
        req.socket.destroy();
        return;
      default:
        return reply(res, 200, { result: 42, error: null, id: call.id });
    }
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'powbridge-rpc-'));
  server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

async function failure(promise: Promise<unknown>): Promise<NodeRpcError> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(NodeRpcError);
  return err as NodeRpcError;
}

describe('NodeRpc', () => {
  const password = { user: 'alice', password: 's3cret' };

  it('sends basic auth and validates the result', async () => {
    const rpc = new NodeRpc({ url, auth: password });
    await expect(rpc.call('echo', [1, 'a'], z.tuple([z.number(), z.string()]))).resolves.toEqual([
      1,
      'a',
    ]);
    rpc.close();
  });

  it('reports a wrong password as an authentication failure, without the password', async () => {
    const rpc = new NodeRpc({ url, auth: { user: 'alice', password: 'wrong-pw' } });
    const err = await failure(rpc.call('getinfo', [], z.number()));
    expect(err.kind).toBe('auth');
    expect(err.message).toMatch(/^RPC authentication failed at http:\/\/127\.0\.0\.1:\d+\//);
    expect(err.message).not.toContain('wrong-pw');
    rpc.close();
  });

  it('reads the cookie file at call time (the node rewrites it on restart)', async () => {
    const cookieFile = join(dir, '.cookie');
    writeFileSync(cookieFile, '__cookie__:old\n');
    const rpc = new NodeRpc({ url, auth: { cookieFile } });
    expect((await failure(rpc.call('getinfo', [], z.number()))).kind).toBe('auth');
    writeFileSync(cookieFile, '__cookie__:c00kie');
    await expect(rpc.call('getinfo', [], z.number())).resolves.toBe(42);
    rmSync(cookieFile);
    const missing = await failure(rpc.call('getinfo', [], z.number()));
    expect(missing.kind).toBe('auth');
    expect(missing.message).toMatch(/cannot read RPC cookie file .*ENOENT/);
    rpc.close();
  });

  it('says the node is unreachable when nothing listens', async () => {
    const port = await freePort();
    const rpc = new NodeRpc({ url: `http://127.0.0.1:${port}`, auth: password });
    const err = await failure(rpc.call('getinfo', [], z.number()));
    expect(err.kind).toBe('unreachable');
    expect(err.message).toBe(`node unreachable at http://127.0.0.1:${port}/ (ECONNREFUSED)`);
    rpc.close();
  });

  it('turns JSON-RPC error objects into RpcCallError with code and message', async () => {
    const rpc = new NodeRpc({ url, auth: password });
    for (const [method, code, message] of [
      ['fail', -8, 'Invalid parameter'],
      ['missing', -32601, 'Method not found'],
    ] as const) {
      const err = await failure(rpc.call(method, [], z.number()));
      expect(err).toBeInstanceOf(RpcCallError);
      expect(err.kind).toBe('rpc');
      expect((err as RpcCallError).code).toBe(code);
      expect((err as RpcCallError).rpcMessage).toBe(message);
      expect(err.message).toBe(`${method} failed: ${message} (code ${code})`);
    }
    rpc.close();
  });

  it('rejects answers of the wrong shape, non-JSON bodies and HTTP errors', async () => {
    const rpc = new NodeRpc({ url, auth: password });
    const shape = await failure(rpc.call('getinfo', [], z.string()));
    expect(shape.kind).toBe('invalid-response');
    expect(shape.message).toMatch(/^getinfo: unexpected answer/);
    expect((await failure(rpc.call('garbage', [], z.number()))).kind).toBe('invalid-response');
    const busy = await failure(rpc.call('busy', [], z.number()));
    expect(busy.kind).toBe('http');
    expect(busy.message).toMatch(/HTTP 503 .*Work queue depth exceeded/);
    rpc.close();
  });

  it('times out, and tells a caller abort from a timeout', async () => {
    const rpc = new NodeRpc({ url, auth: password, timeoutMs: 150 });
    const timeout = await failure(rpc.call('slow', [], z.number()));
    expect(timeout.kind).toBe('timeout');
    expect(timeout.message).toMatch(/no answer .* in 150 ms/);
    const controller = new AbortController();
    const pending = rpc.call('slow', [], z.number(), {
      signal: controller.signal,
      timeoutMs: 5_000,
    });
    setTimeout(() => controller.abort(), 50);
    expect((await failure(pending)).kind).toBe('aborted');
    // A long call outlives the default timeout when asked to.
    await expect(rpc.call('slow', [], z.number(), { timeoutMs: 5_000 })).resolves.toBe(1);
    rpc.close();
  });

  it('reports a connection cut mid-call as disconnected', async () => {
    const rpc = new NodeRpc({ url, auth: password });
    const err = await failure(rpc.call('hangup', [], z.number()));
    expect(err.kind).toBe('disconnected');
    expect(err.message).toMatch(/connection to node at .* lost during hangup/);
    rpc.close();
  });

  it('never keeps credentials from the URL', async () => {
    const rpc = new NodeRpc({ url: url.replace('http://', 'http://bob:pw@'), auth: password });
    expect(rpc.url).toBe(url);
    await expect(rpc.call('getinfo', [], z.number())).resolves.toBe(42);
    expect(seen.at(-1)?.authorization).toBe(
      `Basic ${Buffer.from('alice:s3cret').toString('base64')}`,
    );
    expect(displayUrl('http://u:p@host:1/x')).toBe('http://host:1/x');
    rpc.close();
  });
});
