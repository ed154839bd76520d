import { EventEmitter } from 'node:events';
import { connect, type Socket } from 'node:net';
import { type ControlReply, ControlReplyParser } from './control-reply.js';

/**
 * A TCP connection to Tor's control port (control-spec §2, §3). Commands are single lines;
 * Tor answers them strictly in order, so each reply settles the oldest waiting command.
 * Asynchronous events (6xx) are dropped: this client never subscribes to any.
 *
 * Error messages name the command verb and Tor's answer, never the command line itself:
 * AUTHENTICATE carries a secret.
 */

export class TorControlError extends Error {
  override name = 'TorControlError';
  /** Tor's status code when Tor refused a command (e.g. 515 authentication failed). */
  readonly status: number | undefined;

  constructor(message: string, status?: number) {
    super(message);
    this.status = status;
  }
}

export interface TorControlAddress {
  host: string;
  port: number;
}

export interface TorControlOptions {
  /** For the connection and for each command's reply (default 15 s). */
  timeoutMs?: number;
}

interface Waiting {
  verb: string;
  resolve: (reply: ControlReply) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

const DEFAULT_TIMEOUT_MS = 15_000;
const QUIT_WAIT_MS = 1000;
/** Printable ASCII only: no CR/LF (a second command smuggled in), no control bytes. */
const COMMAND_LINE = /^[\x20-\x7e]+$/;

/** "host:port", with IPv6 in brackets. */
export function formatAddress({ host, port }: TorControlAddress): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

export class TorControlConnection extends EventEmitter<{ close: [reason: string] }> {
  private readonly parser = new ControlReplyParser();
  private readonly waiting: Waiting[] = [];
  private closedReason: string | null = null;
  /** Set by close(): the socket closing after QUIT is expected, not a loss. */
  private closing = false;

  private constructor(
    private readonly socket: Socket,
    readonly address: string,
    private readonly timeoutMs: number,
  ) {
    super();
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) =>
      this.shut(`connection error (${err.code ?? err.message})`),
    );
    socket.on('close', () =>
      this.shut(this.closing ? 'closed' : 'Tor closed the control connection'),
    );
  }

  static connect(
    address: TorControlAddress,
    options: TorControlOptions = {},
  ): Promise<TorControlConnection> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const shown = formatAddress(address);
    return new Promise((resolve, reject) => {
      const socket = connect({ host: address.host, port: address.port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new TorControlError(`cannot connect to Tor's control port ${shown}: timed out`));
      }, timeoutMs);
      const onError = (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(
          new TorControlError(
            `cannot connect to Tor's control port ${shown} (${err.code ?? err.message})`,
          ),
        );
      };
      socket.once('error', onError);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', onError);
        socket.setNoDelay(true);
        resolve(new TorControlConnection(socket, shown, timeoutMs));
      });
    });
  }

  get closed(): boolean {
    return this.closedReason !== null;
  }

  /** Send one command and return Tor's reply, whatever its status. */
  request(line: string): Promise<ControlReply> {
    const verb = line.split(' ', 1)[0] as string;
    if (!COMMAND_LINE.test(line)) {
      return Promise.reject(new TorControlError(`${verb}: command has characters Tor cannot take`));
    }
    if (this.closedReason !== null) {
      return Promise.reject(new TorControlError(`${verb}: ${this.closedReason}`));
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        // The reply may still come and would then answer the wrong command: drop the connection.
        this.shut(`${verb}: no reply from Tor within ${this.timeoutMs} ms`);
      }, this.timeoutMs);
      this.waiting.push({ verb, resolve, reject, timer });
      this.socket.write(`${line}\r\n`);
    });
  }

  /** Send one command; anything but 250 is an error carrying Tor's status and message. */
  async command(line: string): Promise<ControlReply> {
    const reply = await this.request(line);
    if (reply.status !== 250) {
      const verb = line.split(' ', 1)[0] as string;
      const message = reply.lines.map((l) => l.text).join('; ');
      throw new TorControlError(`${verb}: Tor answered ${reply.status} ${message}`, reply.status);
    }
    return reply;
  }

  /** Close (QUIT first when possible, so Tor tidies up at once). */
  async close(): Promise<void> {
    if (this.closedReason !== null) return;
    this.closing = true;
    // Tor answers QUIT at once; a Tor that does not is not worth waiting for.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.request('QUIT').catch(() => undefined),
      new Promise((resolve) => (timer = setTimeout(resolve, QUIT_WAIT_MS))),
    ]);
    clearTimeout(timer);
    this.shut('closed');
  }

  private onData(chunk: Buffer): void {
    let replies: ControlReply[];
    try {
      replies = this.parser.push(chunk);
    } catch (err) {
      // TorProtocolError: the reply stream is out of step with our commands.
      this.shut(`bad reply from Tor: ${(err as Error).message}`);
      this.socket.destroy();
      return;
    }
    for (const reply of replies) {
      if (reply.async) continue;
      const waiter = this.waiting.shift();
      if (!waiter) {
        this.shut(`bad reply from Tor: a ${reply.status} reply to no command`);
        this.socket.destroy();
        return;
      }
      clearTimeout(waiter.timer);
      waiter.resolve(reply);
    }
  }

  /** Fail every waiting command with `reason`; later commands fail at once. */
  private shut(reason: string): void {
    if (this.closedReason !== null) return;
    this.closedReason = reason;
    for (const waiter of this.waiting.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(new TorControlError(`${waiter.verb}: ${reason}`));
    }
    this.socket.destroy();
    this.emit('close', reason);
  }
}
