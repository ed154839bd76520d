import { type ChildProcess, spawn } from 'node:child_process';
import { BIN } from './cli.js';

/**
 * Real `powbridge relay` processes (built dist/) for tests that kill and restart a relay:
 * started on a loopback port, their output kept (tail only) for a failure's message, and all
 * of them killed when the test ends — or when the test process itself exits early.
 */

const LISTEN_RE = /powbridge relay: listening on (http:\/\/\S+)/;
const START_TIMEOUT_MS = 20_000;
const OUTPUT_TAIL = 4_000;

export interface RelayExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RelayProcess {
  /** http://127.0.0.1:port */
  url: string;
  /** ws://127.0.0.1:port/v1/circuit */
  circuitUrl: string;
  child: ChildProcess;
  exited: Promise<RelayExit>;
  /** The tails of stderr and stdout, for an assertion's message. */
  output(): string;
}

export class RelayProcesses {
  private readonly children = new Set<ChildProcess>();
  private readonly killNow = () => {
    for (const child of this.children) child.kill('SIGKILL');
  };

  constructor() {
    process.on('exit', this.killNow);
  }

  /** `powbridge relay --config <file> --listen 127.0.0.1:0`, resolved once it listens. */
  async spawn(configFile: string): Promise<RelayProcess> {
    const child = spawn(
      process.execPath,
      [BIN, 'relay', '--config', configFile, '--listen', '127.0.0.1:0'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.children.add(child);
    let stdout = '';
    let stderr = '';
    // Drain stdout (pino) too: a full pipe would stall the relay.
    child.stdout?.on('data', (d: Buffer) => (stdout = tail(stdout + d.toString())));
    const exited = new Promise<RelayExit>((resolve) =>
      child.once('exit', (code, signal) => {
        this.children.delete(child);
        resolve({ code, signal });
      }),
    );
    const output = () => `stderr:\n${stderr}\nstdout:\n${stdout}`;
    // Resolved on the line itself, not by polling: a test may time a kill from this moment.
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`relay did not listen\n${output()}`)),
        START_TIMEOUT_MS,
      );
      child.stderr?.on('data', (d: Buffer) => {
        stderr = tail(stderr + d.toString());
        const match = LISTEN_RE.exec(stderr);
        if (match?.[1]) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      });
      void exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`relay exited (${code ?? signal}) before listening\n${output()}`));
      });
    });
    return { url, circuitUrl: `${url.replace(/^http/, 'ws')}/v1/circuit`, child, exited, output };
  }

  /** SIGKILL every relay still running and wait until they are gone. */
  async killAll(): Promise<void> {
    await Promise.all(
      [...this.children].map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGKILL');
          }),
      ),
    );
    process.off('exit', this.killNow);
  }
}

function tail(text: string): string {
  return text.length > OUTPUT_TAIL ? text.slice(-OUTPUT_TAIL) : text;
}

/**
 * A relay.toml for a relay whose upstream stays down (nothing listens on port 1), logging
 * errors only, so anything it logs is worth reading in a failure message. Redeeming and the
 * tunnel do not need an upstream. `extra` lines follow (more sections).
 */
export function offlineRelayConfig(dataDir: string, extra: readonly string[] = []): string {
  return [
    '[relay]',
    `dataDir = ${JSON.stringify(dataDir)}`,
    '[log]',
    'level = "error"',
    '[source]',
    'type = "node"',
    '[source.node]',
    'rpcUrl = "http://127.0.0.1:1"',
    'rpcUser = "unused"',
    'rpcPassword = "unused"',
    'payoutAddress = "rltc1qunused"',
    ...extra,
    '',
  ].join('\n');
}
