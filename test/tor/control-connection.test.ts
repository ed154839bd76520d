import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { TorControlConnection, TorControlError } from '../../src/tor/control-connection.js';
import { freePort } from '../helpers/litecoind.js';

/** A raw TCP server: `onLine` decides what to write back for each command line. */
async function rawServer(
  onLine: (line: string, socket: Socket) => void,
  onConnect?: (socket: Socket) => void,
): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => {
    onConnect?.(socket);
    let buffer = '';
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      let end: number;
      while ((end = buffer.indexOf('\r\n')) >= 0) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        onLine(line, socket);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as { port: number }).port };
}

const servers: Server[] = [];
const connections: TorControlConnection[] = [];
afterEach(async () => {
  for (const c of connections.splice(0)) await c.close();
  for (const s of servers.splice(0)) await new Promise((resolve) => s.close(resolve));
});

async function connectTo(
  onLine: (line: string, socket: Socket) => void,
  timeoutMs?: number,
): Promise<TorControlConnection> {
  const { server, port } = await rawServer(onLine);
  servers.push(server);
  const control = await TorControlConnection.connect(
    { host: '127.0.0.1', port },
    timeoutMs ? { timeoutMs } : {},
  );
  connections.push(control);
  return control;
}

describe('Tor control connection', () => {
  it('answers pipelined commands in order and skips asynchronous events', async () => {
    const control = await connectTo((line, socket) => {
      if (line === 'QUIT') return void socket.end('250 closing connection\r\n');
      // An event first: it answers nothing.
      socket.write(`650 STATUS_GENERAL NOTICE X\r\n250-echo=${line}\r\n250 OK\r\n`);
    });
    const [a, b, c] = await Promise.all([
      control.command('GETINFO a'),
      control.command('GETINFO b'),
      control.command('GETINFO c'),
    ]);
    expect([a, b, c].map((r) => r.lines[0]?.text)).toEqual([
      'echo=GETINFO a',
      'echo=GETINFO b',
      'echo=GETINFO c',
    ]);
  });

  it("command() turns a non-250 answer into an error with Tor's status and words", async () => {
    const control = await connectTo((_line, socket) =>
      socket.write('552 Unrecognized key "nope"\r\n'),
    );
    const err = await control.command('GETINFO nope').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TorControlError);
    expect((err as TorControlError).status).toBe(552);
    expect((err as Error).message).toBe('GETINFO: Tor answered 552 Unrecognized key "nope"');
    // request() hands back any status.
    expect((await control.request('GETINFO nope')).status).toBe(552);
  });

  it('refuses command lines that could smuggle a second command', async () => {
    const seen: string[] = [];
    const control = await connectTo((line) => seen.push(line));
    await expect(control.request('GETINFO a\r\nSIGNAL HALT')).rejects.toThrow(
      /GETINFO: command has characters Tor cannot take/,
    );
    await expect(control.request('GETINFO \u00e9')).rejects.toThrow(TorControlError);
    expect(seen).toEqual([]);
  });

  it('a refused connection is a clear error', async () => {
    const port = await freePort();
    await expect(TorControlConnection.connect({ host: '127.0.0.1', port })).rejects.toThrow(
      `cannot connect to Tor's control port 127.0.0.1:${port} (ECONNREFUSED)`,
    );
  });

  it('a silent Tor times the command out and drops the connection', async () => {
    const control = await connectTo(() => undefined, 200);
    const closed = new Promise<string>((resolve) => control.once('close', resolve));
    await expect(control.command('GETINFO version')).rejects.toThrow(
      'GETINFO: GETINFO: no reply from Tor within 200 ms',
    );
    expect(await closed).toMatch(/no reply/);
    expect(control.closed).toBe(true);
    await expect(control.command('GETINFO version')).rejects.toThrow(/no reply/);
  });

  it('Tor closing mid-reply fails the waiting command', async () => {
    const control = await connectTo((_line, socket) => socket.end('250-half\r\n'));
    await expect(control.command('GETINFO x')).rejects.toThrow(
      'GETINFO: Tor closed the control connection',
    );
  });

  it('a malformed reply drops the connection with the reason', async () => {
    const control = await connectTo((_line, socket) => socket.write('hello there\r\n'));
    await expect(control.command('GETINFO x')).rejects.toThrow(
      /GETINFO: bad reply from Tor: malformed reply line: "hello there"/,
    );
  });

  it('a reply nobody asked for drops the connection', async () => {
    const { server, port } = await rawServer(
      () => undefined,
      (socket) => socket.write('250 OK\r\n'),
    );
    servers.push(server);
    const control = await TorControlConnection.connect({ host: '127.0.0.1', port });
    connections.push(control);
    const reason = await new Promise<string>((resolve) => control.once('close', resolve));
    expect(reason).toBe('bad reply from Tor: a 250 reply to no command');
  });

  it('close() sends QUIT and reports an expected close', async () => {
    const seen: string[] = [];
    const control = await connectTo((line, socket) => {
      seen.push(line);
      if (line === 'QUIT') socket.end('250 closing connection\r\n');
    });
    const closed = new Promise<string>((resolve) => control.once('close', resolve));
    await control.close();
    expect(seen).toEqual(['QUIT']);
    expect(await closed).toBe('closed');
  });
});
