import { createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { openTunnel } from '../client/tunnel-client.js';

/**
 * What a ticket buys, measured: a local server that sends bytes as fast as it may, and two
 * downloads from it through the relay's priority tunnel at the same time, one without a
 * grant (free class) and one with (paid class). The HTB gives the paid class the link first,
 * so the paid stream's rate is the visible difference. Loopback only; the relay's exit policy
 * must allow exactly this server.
 */

const CHUNK = Buffer.alloc(64 * 1024, 0x5a);

export interface ByteSource {
  /** "127.0.0.1:<port>", the tunnel destination. */
  readonly address: string;
  readonly port: number;
  close(): Promise<void>;
}

/** A TCP server on 127.0.0.1 that writes to every client until it goes away. */
export async function startByteSource(): Promise<ByteSource> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    const pour = (): void => {
      while (!socket.destroyed && socket.write(CHUNK));
    };
    socket.on('drain', pour);
    pour();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as { port: number };
  return {
    address: `127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface TunnelRates {
  freeMbit: number;
  paidMbit: number;
  seconds: number;
}

export interface MeasureOptions {
  /** The relay's HTTP base URL. */
  relayUrl: string;
  /** host:port of the byte source. */
  to: string;
  /** The grant token a redeemed ticket bought. */
  token: string;
  /** Measuring window (default 4 s), after a short warm-up that fills the buffers. */
  seconds?: number;
  warmupSeconds?: number;
  /** Ends the measurement early (it then rejects). */
  signal?: AbortSignal;
}

/** Download through a free and a paid stream at once; Mbit/s of each over the window. */
export async function measureFreeVsPaid(options: MeasureOptions): Promise<TunnelRates> {
  const seconds = options.seconds ?? 4;
  const warmupMs = (options.warmupSeconds ?? 0.5) * 1000;
  const streams: Duplex[] = [];
  try {
    const free = await openTunnel(options.relayUrl, options.to);
    streams.push(free);
    const paid = await openTunnel(options.relayUrl, options.to, { token: options.token });
    streams.push(paid);
    const counted = { free: 0, paid: 0 };
    let counting = false;
    free.on('data', (chunk: Buffer) => {
      if (counting) counted.free += chunk.length;
    });
    paid.on('data', (chunk: Buffer) => {
      if (counting) counted.paid += chunk.length;
    });
    await sleep(warmupMs, undefined, { signal: options.signal });
    counting = true;
    const started = performance.now();
    await sleep(seconds * 1000, undefined, { signal: options.signal });
    counting = false;
    const elapsed = (performance.now() - started) / 1000;
    const mbit = (bytes: number): number => (bytes * 8) / elapsed / 1e6;
    return { freeMbit: mbit(counted.free), paidMbit: mbit(counted.paid), seconds: elapsed };
  } finally {
    for (const stream of streams) stream.destroy();
  }
}
