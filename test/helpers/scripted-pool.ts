import { EventEmitter } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';

/**
 * A real Stratum V1 pool on 127.0.0.1 (port 0) whose behaviour each test scripts. It parses
 * lines with plain JSON.parse, independently of the codec under test, and records everything
 * it receives so tests can assert what reached the pool.
 *
 * Every method has a handler; the defaults answer like a cooperative pool. A test replaces a
 * handler to refuse, delay, drop or reorder answers, and uses a connection's send helpers to
 * push notifications, raw garbage, or a line split over several writes.
 */

export type StratumId = number | string | null;

/** One JSON message as received from the client. */
export interface Received {
  id: StratumId;
  method?: string;
  params?: unknown[];
  result?: unknown;
  error?: unknown;
  /** Which connection (0-based, in accept order) it came on. */
  connection: number;
}

export type Handler = (message: Received, connection: PoolConnection) => void;

export const DEFAULT_MASK = '1fffe000';

/**
 * What node-stratum-pool leaves unanswered: it serves subscribe, authorize, submit and
 * get_transactions, and for any other method logs "unknown method" and sends nothing back.
 */
export const NODE_STRATUM_POOL_IGNORES = ['mining.configure', 'mining.extranonce.subscribe'];

/** A notify params array: [jobId, prevhash, coinb1, coinb2, branches, version, nbits, ntime, clean]. */
export function notifyParams(jobId: string, clean = true, ntime = '5f5e1000'): unknown[] {
  return [
    jobId,
    '00'.repeat(31) + '01',
    '01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20',
    '0affffffff0100f2052a010000001976a914000000000000000000000000000000000000000088ac00000000',
    ['11'.repeat(32), '22'.repeat(32)],
    '20000000',
    '1d00ffff',
    ntime,
    clean,
  ];
}

export class PoolConnection {
  readonly received: Received[] = [];
  readonly closed: Promise<void>;
  private buffered = '';

  constructor(
    readonly index: number,
    readonly socket: Socket,
    private readonly onMessage: (message: Received, connection: PoolConnection) => void,
  ) {
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', () => socket.destroy());
  }

  get isClosed(): boolean {
    return this.socket.destroyed;
  }

  send(message: Record<string, unknown>): void {
    this.sendRaw(`${JSON.stringify(message)}\n`);
  }

  sendRaw(text: string | Buffer): void {
    if (!this.socket.destroyed) this.socket.write(text);
  }

  /** Write `text` as several TCP writes of the given byte sizes, `delayMs` apart. */
  async sendSplit(text: string, sizes: number[], delayMs = 20): Promise<void> {
    const bytes = Buffer.from(text, 'utf8');
    let offset = 0;
    for (const size of [...sizes, bytes.length]) {
      if (offset >= bytes.length) break;
      this.sendRaw(bytes.subarray(offset, offset + size));
      offset += size;
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }

  reply(id: StratumId, result: unknown, error: unknown = null): void {
    this.send({ id, result, error });
  }

  notify(method: string, params: unknown[]): void {
    this.send({ id: null, method, params });
  }

  /** A pool → client request (client.get_version, mining.ping). */
  request(id: StratumId, method: string, params: unknown[] = []): void {
    this.send({ id, method, params });
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: string): void {
    this.buffered += chunk;
    let newline: number;
    while ((newline = this.buffered.indexOf('\n')) !== -1) {
      const line = this.buffered.slice(0, newline).trim();
      this.buffered = this.buffered.slice(newline + 1);
      if (line === '') continue;
      const json = JSON.parse(line) as Omit<Received, 'connection'>;
      const message: Received = { ...json, connection: this.index };
      this.received.push(message);
      this.onMessage(message, this);
    }
  }
}

export interface ScriptedPoolOptions {
  /** PEM key and certificate: serve stratum+ssl. */
  tls?: { key: string; cert: string };
  extranonce1?: string;
  extranonce2Size?: number;
  /** Listen on this port (a pool restarted where it was); default: any free port. */
  port?: number;
}

interface ScriptedPoolEvents {
  message: [Received, PoolConnection];
  connection: [PoolConnection];
}

export class ScriptedPool extends EventEmitter<ScriptedPoolEvents> {
  readonly connections: PoolConnection[] = [];
  readonly messages: Received[] = [];
  /** Replace entries to script the pool; `undefined` handlers leave a request unanswered. */
  readonly handlers: Record<string, Handler | undefined>;
  extranonce1: string;
  extranonce2Size: number;
  /** When false, new connections are closed at once (the pool is "down"). */
  accepting = true;
  /**
   * When false, the pool has hung: connections are accepted and kept open, what arrives is
   * recorded, but nothing is answered on any connection, old or new.
   */
  answering = true;
  /** Raw sockets, including TLS ones still in their handshake, so close() never waits. */
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
    readonly tls: boolean,
    options: ScriptedPoolOptions,
  ) {
    super();
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    this.extranonce1 = options.extranonce1 ?? 'f0000001';
    this.extranonce2Size = options.extranonce2Size ?? 4;
    this.handlers = this.defaultHandlers();
  }

  static async start(options: ScriptedPoolOptions = {}): Promise<ScriptedPool> {
    const ref: { pool?: ScriptedPool } = {};
    const onSocket = (socket: Socket) => ref.pool?.accept(socket);
    const server = options.tls
      ? createTlsServer({ key: options.tls.key, cert: options.tls.cert }, onSocket)
      : createServer(onSocket);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('no port');
    ref.pool = new ScriptedPool(server, address.port, options.tls !== undefined, options);
    return ref.pool;
  }

  get url(): string {
    return `${this.tls ? 'stratum+ssl' : 'stratum+tcp'}://127.0.0.1:${this.port}`;
  }

  /** The cooperative pool: what each handler does unless a test replaces it. */
  defaultHandlers(): Record<string, Handler | undefined> {
    return {
      'mining.configure': (m, c) =>
        c.reply(m.id, { 'version-rolling': true, 'version-rolling.mask': DEFAULT_MASK }),
      'mining.subscribe': (m, c) =>
        c.reply(m.id, [
          [
            ['mining.set_difficulty', `sub-${c.index}`],
            ['mining.notify', `sub-${c.index}`],
          ],
          this.extranonce1,
          this.extranonce2Size,
        ]),
      'mining.authorize': (m, c) => c.reply(m.id, true),
      'mining.extranonce.subscribe': (m, c) => c.reply(m.id, true),
      'mining.submit': (m, c) => c.reply(m.id, true),
    };
  }

  /** Never answer these methods (as a pool that does not know them and stays silent). */
  ignore(...methods: string[]): void {
    for (const method of methods) this.handlers[method] = undefined;
  }

  /** All messages with this method, across connections. */
  received(method: string): Received[] {
    return this.messages.filter((m) => m.method === method);
  }

  /** The first received message (already here or still to come) matching `match`. */
  waitFor(match: string | ((m: Received) => boolean), timeoutMs = 3000): Promise<Received> {
    const test = typeof match === 'string' ? (m: Received) => m.method === match : match;
    const found = this.messages.find(test);
    if (found) return Promise.resolve(found);
    return waitForEvent<ScriptedPoolEvents, 'message'>(
      this,
      'message',
      ([m]) => test(m),
      timeoutMs,
    ).then(([m]) => m);
  }

  /** The n-th connection (0-based), waiting for it if needed. */
  connection(index: number, timeoutMs = 3000): Promise<PoolConnection> {
    const existing = this.connections[index];
    if (existing) return Promise.resolve(existing);
    return waitForEvent<ScriptedPoolEvents, 'connection'>(
      this,
      'connection',
      ([c]) => c.index === index,
      timeoutMs,
    ).then(([c]) => c);
  }

  /** Close every connection and stop listening. */
  async close(): Promise<void> {
    const closing = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const connection of this.connections) connection.destroy();
    for (const socket of this.sockets) socket.destroy();
    await Promise.all(this.connections.map((c) => c.closed));
    await closing;
  }

  private accept(socket: Socket): void {
    if (!this.accepting) {
      socket.destroy();
      return;
    }
    const connection = new PoolConnection(this.connections.length, socket, (message, c) => {
      this.messages.push(message);
      this.emit('message', message, c);
      if (this.answering && message.method !== undefined) {
        this.handlers[message.method]?.(message, c);
      }
    });
    this.connections.push(connection);
    this.emit('connection', connection);
  }
}

/**
 * Resolve with the arguments of the next `event` that passes `test`; reject after timeout.
 * TypeScript cannot infer an emitter's event map from a subclass, so pass `E` explicitly.
 */
export function waitForEvent<E extends Record<keyof E, unknown[]>, K extends keyof E & string>(
  emitter: EventEmitter<E>,
  event: K,
  test: (args: E[K]) => boolean = () => true,
  timeoutMs = 3000,
): Promise<E[K]> {
  // The typed EventEmitter's listener signature is awkward to spell generically.
  const untyped = emitter as unknown as EventEmitter;
  return new Promise((resolve, reject) => {
    const listener = (...args: unknown[]) => {
      if (!test(args as E[K])) return;
      clearTimeout(timer);
      untyped.off(event, listener);
      resolve(args as E[K]);
    };
    const timer = setTimeout(() => {
      untyped.off(event, listener);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for '${event}'`));
    }, timeoutMs);
    untyped.on(event, listener);
  });
}

/** Record every emission of `event` (for asserting order and counts). Pass `E` explicitly. */
export function record<E extends Record<keyof E, unknown[]>, K extends keyof E & string>(
  emitter: EventEmitter<E>,
  event: K,
): E[K][0][] {
  const seen: E[K][0][] = [];
  (emitter as unknown as EventEmitter).on(event, (first: E[K][0]) => seen.push(first));
  return seen;
}
