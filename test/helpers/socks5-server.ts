import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A minimal SOCKS5 proxy (RFC 1928, username/password auth RFC 1929, CONNECT only) that
 * records what each client asked for: the credentials (Tor isolates streams by them) and the
 * destination as sent, so a test can tell a host name (socks5h, DNS by the proxy) from an
 * address (socks5, DNS by the client). Every destination is reached at 127.0.0.1.
 */

export interface SocksRequest {
  username: string | null;
  password: string | null;
  host: string;
  port: number;
}

export interface Socks5Server {
  port: number;
  requests: SocksRequest[];
  close(): Promise<void>;
}

/** Bytes from a socket on demand: `read(n)` resolves once n bytes have arrived. */
function reader(socket: Socket): (n: number) => Promise<Buffer> {
  let buffered = Buffer.alloc(0);
  let waiting: { n: number; resolve: (b: Buffer) => void } | null = null;
  const flush = () => {
    if (waiting && buffered.length >= waiting.n) {
      const { n, resolve } = waiting;
      waiting = null;
      const out = buffered.subarray(0, n);
      buffered = buffered.subarray(n);
      resolve(out);
    }
  };
  const onData = (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    flush();
  };
  socket.on('data', onData);
  return (n) =>
    new Promise((resolve) => {
      waiting = { n, resolve };
      flush();
    });
}

async function handshake(socket: Socket, requests: SocksRequest[]): Promise<void> {
  const read = reader(socket);
  const [, methodCount = 0] = await read(2);
  const methods = [...(await read(methodCount))];
  const useAuth = methods.includes(0x02);
  socket.write(Buffer.from([5, useAuth ? 0x02 : 0x00]));
  let username: string | null = null;
  let password: string | null = null;
  if (useAuth) {
    const [, userLength = 0] = await read(2);
    username = (await read(userLength)).toString();
    const [passLength = 0] = await read(1);
    password = (await read(passLength)).toString();
    socket.write(Buffer.from([1, 0]));
  }
  const [, , , addressType] = await read(4);
  let host: string;
  if (addressType === 1) host = [...(await read(4))].join('.');
  else if (addressType === 3) host = (await read((await read(1))[0] ?? 0)).toString();
  else throw new Error(`address type ${addressType} not supported here`);
  const port = (await read(2)).readUInt16BE(0);
  requests.push({ username, password, host, port });
  socket.removeAllListeners('data');
  socket.pause(); // until piped: nothing may be read and dropped in between
  const upstream = connect({ host: '127.0.0.1', port }, () => {
    socket.write(Buffer.from([5, 0, 0, 1, 0, 0, 0, 0, 0, 0]));
    socket.pipe(upstream).pipe(socket);
  });
  upstream.on('error', () => socket.destroy());
}

export async function startSocks5Server(): Promise<Socks5Server> {
  const requests: SocksRequest[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    handshake(socket, requests).catch(() => socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return {
    port: address.port,
    requests,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
