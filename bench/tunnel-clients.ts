import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { WebSocket } from 'ws';

/**
 * The endpoints of bench/tunnel.ts, forked by it so that they do not share the relay's event
 * loop: a bulk TCP server that writes to every connection as fast as the reader takes it,
 * and N `ws` download clients that open `/v1/tunnel?to=<that server>` and count what they
 * receive. The parent asks for byte counts; rates are computed on this process's clock.
 *
 * Not a benchmark on its own (bench/run.ts skips <name>-<part>.ts helpers): run
 * bench/tunnel.ts.
 */

/** Parent → clients. One request at a time; each gets exactly one answer. */
export type ToClients =
  | { type: 'server' }
  | { type: 'open'; url: string; count: number; paid: number; token: string; concurrency: number }
  | { type: 'start'; expect: number }
  | { type: 'sample' }
  | { type: 'closeAll' }
  | { type: 'exit' };

/** Clients → parent. */
export type FromClients =
  | { type: 'server'; port: number }
  | { type: 'opened'; ready: number; failed: number; firstError: string | null; ms: number }
  | { type: 'started'; connections: number }
  | { type: 'sample'; t: number; bytes: number[]; unexpectedCloses: number }
  | { type: 'closed'; ms: number };

const block = Buffer.alloc(64 * 1024, 0x5a);
const serverSockets = new Set<Socket>();
let server: Server | null = null;
/** The bulk server holds new connections silent until 'start', so that opening 1,000
 *  streams does not compete with the bytes of those already open. */
let pumping = false;

function pump(socket: Socket): void {
  while (!socket.destroyed && socket.write(block));
  if (!socket.destroyed) socket.once('drain', () => pump(socket));
}
let bulkPort = 0;

interface Stream {
  ws: WebSocket;
  bytes: number;
  closing: boolean;
}
let streams: Stream[] = [];
let unexpectedCloses = 0;

function send(message: FromClients): void {
  process.send?.(message);
}

async function startServer(): Promise<number> {
  server = createServer((socket) => {
    serverSockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => serverSockets.delete(socket));
    if (pumping) pump(socket);
  });
  const s = server;
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', 1024, resolve));
  return (s.address() as AddressInfo).port;
}

function openOne(url: string, headers: Record<string, string>): Promise<Stream> {
  const ws = new WebSocket(`${url}?to=${encodeURIComponent(`127.0.0.1:${bulkPort}`)}`, {
    headers,
    perMessageDeflate: false,
    handshakeTimeout: 15_000,
  });
  const stream: Stream = { ws, bytes: 0, closing: false };
  ws.on('message', (data: Buffer) => (stream.bytes += data.length));
  return new Promise<Stream>((resolve, reject) => {
    ws.once('open', () => {
      ws.off('error', reject);
      ws.on('error', () => {});
      ws.once('close', () => {
        if (!stream.closing) unexpectedCloses++;
      });
      resolve(stream);
    });
    ws.once('error', reject);
  });
}

async function open(
  request: Extract<ToClients, { type: 'open' }>,
): Promise<Extract<FromClients, { type: 'opened' }>> {
  const start = performance.now();
  let failed = 0;
  let firstError: string | null = null;
  const opened: Stream[] = new Array<Stream>(request.count);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < request.count) {
      const i = next++;
      const headers: Record<string, string> =
        i < request.paid ? { authorization: `Priority ${request.token}` } : {};
      try {
        opened[i] = await openOne(request.url, headers);
      } catch (err) {
        failed++;
        firstError ??= err instanceof Error ? err.message : String(err);
      }
    }
  };
  await Promise.all(Array.from({ length: request.concurrency }, worker));
  streams = opened.filter((s) => s !== undefined);
  unexpectedCloses = 0;
  return {
    type: 'opened',
    ready: streams.length,
    failed,
    firstError,
    ms: performance.now() - start,
  };
}

async function closeAll(): Promise<number> {
  const start = performance.now();
  pumping = false;
  const closing = streams.map(
    (s) =>
      new Promise<void>((resolve) => {
        s.closing = true;
        if (s.ws.readyState === WebSocket.CLOSED) return resolve();
        s.ws.once('close', () => resolve());
        s.ws.terminate();
      }),
  );
  await Promise.all(closing);
  streams = [];
  // The relay closes its TCP legs to the bulk server once the WebSockets are gone.
  const deadline = performance.now() + 10_000;
  while (serverSockets.size > 0 && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  for (const s of serverSockets) s.destroy();
  return performance.now() - start;
}

process.on('message', (message: ToClients) => {
  void (async () => {
    switch (message.type) {
      case 'server':
        bulkPort = await startServer();
        return send({ type: 'server', port: bulkPort });
      case 'open':
        return send(await open(message));
      case 'start': {
        // A stream's WebSocket opens before the relay's TCP leg reaches this server.
        const deadline = performance.now() + 10_000;
        while (serverSockets.size < message.expect && performance.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        pumping = true;
        for (const s of serverSockets) pump(s);
        return send({ type: 'started', connections: serverSockets.size });
      }
      case 'sample':
        return send({
          type: 'sample',
          t: performance.now(),
          bytes: streams.map((s) => s.bytes),
          unexpectedCloses,
        });
      case 'closeAll':
        return send({ type: 'closed', ms: await closeAll() });
      case 'exit':
        await closeAll();
        for (const s of serverSockets) s.destroy();
        server?.close();
        process.disconnect();
        return;
    }
  })();
});
