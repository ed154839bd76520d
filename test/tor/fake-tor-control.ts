import { createHmac, randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';

/**
 * A scripted stand-in for Tor's control port on loopback: PROTOCOLINFO, AUTHCHALLENGE,
 * AUTHENTICATE (SAFECOOKIE, COOKIE, HASHEDPASSWORD, NULL, as configured), ADD_ONION,
 * DEL_ONION, GETINFO onions/current and QUIT, with Tor's reply texts. Onion keys and
 * addresses come from a fixed table recorded from a real Tor 0.4.9, so the code under test
 * is checked against Tor's own key → address mapping. `script` overrides any answer, for
 * misbehaving-Tor cases.
 */

/** ADD_ONION NEW:ED25519-V3 results recorded from Tor 0.4.9.11 (throwaway test keys). */
export const TOR_ONION_VECTORS = [
  {
    serviceId: 'znmxhum57z2w6k2ggtxwdpuvw6q2u3hahrcgtkniameeiumdydy7jeqd',
    privateKey:
      'ED25519-V3:wFs3jCLa9nnRyi/3fSJmzyz7sPSf8UC/AR5OtXBG8k1wq+eF73iOFzCnZ/S3pf7ayQH4lkAk7OI/Y1mpcrwqFg==',
  },
  {
    serviceId: '3mqvrwyjkxy63cfabvtync4wd2x6iymv3xky5sgfce6wpoecamjg26yd',
    privateKey:
      'ED25519-V3:YI2xFVvrWWqxlQZgJ4MKLJc85Qf1g7B8ixDnHtiFF0iTs6KvD7Dp10ESs13lhrhuKdff8K0ElzKw33Ues1EQRA==',
  },
] as const;

const SERVER_KEY = 'Tor safe cookie authentication server-to-controller hash';
const CLIENT_KEY = 'Tor safe cookie authentication controller-to-server hash';

export interface FakeTorOptions {
  /** PROTOCOLINFO METHODS (default SAFECOOKIE and COOKIE). */
  methods?: string[];
  /** The cookie Tor checks against, and the COOKIEFILE it reports. */
  cookie?: Buffer;
  cookieFile?: string;
  /** The password HASHEDPASSWORD accepts. */
  password?: string;
  /** Return raw reply text (CRLF lines) to answer a command yourself; undefined: default. */
  script?: (line: string, session: FakeSession) => string | undefined;
}

export interface FakeSession {
  authenticated: boolean;
  socket: Socket;
  /** Services this connection added (removed when it closes: they are not detached). */
  onions: Set<string>;
}

export class FakeTorControl {
  /** Every command line received, in order, across connections. */
  readonly received: string[] = [];
  /** Services alive now, with their Port= targets. */
  readonly onions = new Map<string, string[]>();
  readonly sessions = new Set<FakeSession>();
  private nextVector = 0;

  private constructor(
    private readonly server: Server,
    readonly port: number,
    private readonly options: FakeTorOptions,
  ) {}

  static async start(options: FakeTorOptions = {}): Promise<FakeTorControl> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const fake = new FakeTorControl(server, (server.address() as { port: number }).port, options);
    server.on('connection', (socket: Socket) => fake.accept(socket));
    return fake;
  }

  get address(): { host: string; port: number } {
    return { host: '127.0.0.1', port: this.port };
  }

  /** Drop every connection, as a Tor restart would. */
  dropConnections(): void {
    for (const session of this.sessions) session.socket.destroy();
  }

  async close(): Promise<void> {
    this.dropConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: Socket): void {
    const session: FakeSession = { authenticated: false, socket, onions: new Set() };
    this.sessions.add(session);
    let challenge: { clientHash: string } | null = null;
    let buffer = '';
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.sessions.delete(session);
      for (const id of session.onions) this.onions.delete(id);
    });
    socket.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('utf8');
      let end: number;
      while ((end = buffer.indexOf('\r\n')) >= 0) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        this.received.push(line);
        const scripted = this.options.script?.(line, session);
        if (scripted !== undefined) {
          socket.write(scripted);
          continue;
        }
        const answer = this.answer(line, session, challenge);
        challenge = answer.challenge;
        socket.write(answer.text);
        if (answer.close) {
          socket.end();
          return;
        }
      }
    });
  }

  private answer(
    line: string,
    session: FakeSession,
    challenge: { clientHash: string } | null,
  ): { text: string; close?: boolean; challenge: { clientHash: string } | null } {
    const [verb = '', ...args] = line.split(' ');
    const cookie = this.options.cookie ?? Buffer.alloc(32, 7);
    const reply = (text: string, close = false) => ({ text, close, challenge: null });
    switch (verb.toUpperCase()) {
      case 'PROTOCOLINFO': {
        const methods = (this.options.methods ?? ['COOKIE', 'SAFECOOKIE']).join(',');
        const file = this.options.cookieFile ? ` COOKIEFILE="${this.options.cookieFile}"` : '';
        return reply(
          `250-PROTOCOLINFO 1\r\n250-AUTH METHODS=${methods}${file}\r\n` +
            '250-VERSION Tor="0.4.9.11"\r\n250 OK\r\n',
        );
      }
      case 'AUTHCHALLENGE': {
        const clientNonce = Buffer.from(args[1] ?? '', 'hex');
        const serverNonce = randomBytes(32);
        const mac = (key: string) =>
          createHmac('sha256', key)
            .update(Buffer.concat([cookie, clientNonce, serverNonce]))
            .digest('hex');
        return {
          text:
            `250 AUTHCHALLENGE SERVERHASH=${mac(SERVER_KEY).toUpperCase()} ` +
            `SERVERNONCE=${serverNonce.toString('hex').toUpperCase()}\r\n`,
          challenge: { clientHash: mac(CLIENT_KEY) },
        };
      }
      case 'AUTHENTICATE': {
        const token = (args[0] ?? '').toLowerCase();
        const methods = this.options.methods ?? ['COOKIE', 'SAFECOOKIE'];
        const accepted =
          (challenge !== null && token === challenge.clientHash) ||
          (methods.includes('COOKIE') && token === cookie.toString('hex')) ||
          (this.options.password !== undefined &&
            token === Buffer.from(this.options.password).toString('hex')) ||
          methods.includes('NULL');
        if (!accepted) {
          return reply(
            '515 Authentication failed: Password did not match HashedControlPassword *or* ' +
              'authentication cookie.\r\n',
            true,
          );
        }
        session.authenticated = true;
        return reply('250 OK\r\n');
      }
      case 'QUIT':
        return reply('250 closing connection\r\n', true);
    }
    if (!session.authenticated) return reply('514 Authentication required.\r\n', true);
    switch (verb.toUpperCase()) {
      case 'ADD_ONION': {
        const key = args[0] ?? '';
        const ports = args.filter((a) => a.startsWith('Port=')).map((a) => a.slice(5));
        let vector: (typeof TOR_ONION_VECTORS)[number] | undefined;
        if (key === 'NEW:ED25519-V3') {
          vector = TOR_ONION_VECTORS[this.nextVector++ % TOR_ONION_VECTORS.length];
        } else {
          vector = TOR_ONION_VECTORS.find((v) => v.privateKey === key);
          if (!vector) return reply('512 Failed to decode ED25519-V3 key\r\n');
        }
        const { serviceId, privateKey } = vector as (typeof TOR_ONION_VECTORS)[number];
        if (this.onions.has(serviceId)) return reply('550 Onion address collision\r\n');
        this.onions.set(serviceId, ports);
        session.onions.add(serviceId);
        const discard = args.includes('Flags=DiscardPK') || key !== 'NEW:ED25519-V3';
        return reply(
          `250-ServiceID=${serviceId}\r\n` +
            (discard ? '' : `250-PrivateKey=${privateKey}\r\n`) +
            '250 OK\r\n',
        );
      }
      case 'DEL_ONION': {
        const id = args[0] ?? '';
        if (!this.onions.delete(id)) return reply('552 Unknown Onion Service id\r\n');
        session.onions.delete(id);
        return reply('250 OK\r\n');
      }
      case 'GETINFO':
        if (args[0] === 'onions/current') {
          const ids = [...session.onions].map((id) => `${id}\r\n`).join('');
          return reply(`250+onions/current=\r\n${ids}.\r\n250 OK\r\n`);
        }
        return reply(`552 Unrecognized key "${args[0] ?? ''}"\r\n`);
    }
    return reply(`510 Unrecognized command "${verb}"\r\n`);
  }
}
