import { EventEmitter } from 'node:events';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { type Logger, silentLogger } from '../log.js';
import { encodeNotification } from '../stratum/index.js';
import type { Job } from '../work/job.js';
import type { Stratifier } from './stratifier.js';
import { StratumMinerConnection } from './stratum-miner-connection.js';
import {
  DEFAULT_STRATUM_LIMITS,
  type StratumDropReason,
  type StratumLimits,
} from './stratum-miner-limits.js';

/**
 * The Stratum connector: a plain TCP Stratum V1 server for standard miners (cpuminer,
 * cgminer, old ASICs), one connection per miner, each a donor (docs/design.md §1). It owns the
 * sockets and nothing else; the stratifier decides what work and which answers they get,
 * and how many may subscribe (`limits.maxStratumClients`, apart from the circuits' places).
 * Peer addresses are never read, so they cannot reach a log.
 */

export interface StratumConnectorEvents {
  /** The relay dropped or refused a connection (stats count them by reason). */
  drop: [StratumDropReason];
}

export interface StratumConnectorOptions {
  limits?: Partial<StratumLimits>;
  /**
   * Difficulty miners start at (config `difficulty.stratumInitial`); the stratifier's when
   * undefined. Standard miners span CPUs to ASICs, so the port has its own start.
   */
  initialDifficulty?: number;
  logger?: Logger;
}

export class StratumConnector extends EventEmitter<StratumConnectorEvents> {
  private readonly server: Server;
  private readonly limits: StratumLimits;
  private readonly log: Logger;
  private readonly initialDifficulty: number | undefined;
  private readonly connections = new Set<StratumMinerConnection>();
  /** A job goes to every miner as the same bytes: encode it once. */
  private readonly encodedJobs = new WeakMap<Job, string>();

  constructor(
    private readonly stratifier: Stratifier,
    options: StratumConnectorOptions = {},
  ) {
    super();
    this.limits = { ...DEFAULT_STRATUM_LIMITS, ...options.limits };
    this.log = options.logger ?? silentLogger;
    this.initialDifficulty = options.initialDifficulty;
    // Jobs are small and time-critical: no Nagle delay. TCP keep-alive finds dead peers
    // that the idle timeout would otherwise wait out.
    this.server = createServer({ noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 });
    this.server.on('connection', (socket) => this.accept(socket));
    // Accept errors (e.g. EMFILE) arrive here; unheard, they would crash the relay.
    this.server.on('error', (err) => this.log.error({ err: err.message }, 'stratum server error'));
  }

  /** Number of open miner connections. */
  get size(): number {
    return this.connections.size;
  }

  listen(host: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
  }

  /** The bound address once listening (port 0 picks one), else null. */
  address(): AddressInfo | null {
    const address = this.server.address();
    return address !== null && typeof address === 'object' ? address : null;
  }

  /** Stop accepting, drop every miner, resolve once every socket is closed. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      // Resolves with ERR_SERVER_NOT_RUNNING too: closing twice or before listen is fine.
      this.server.close(() => resolve());
      for (const connection of this.connections) connection.shutdown();
    });
  }

  private accept(socket: Socket): void {
    if (this.connections.size >= this.limits.maxConnections) {
      // Under a connection flood the cheapest answer is none.
      socket.destroy();
      this.emit('drop', 'connection-limit');
      return;
    }
    const connection = new StratumMinerConnection({
      socket,
      stratifier: this.stratifier,
      limits: this.limits,
      log: this.log,
      encodeJob: (job) => this.encodeJob(job),
      initialDifficulty: this.initialDifficulty,
      countDrop: (reason) => this.emit('drop', reason),
    });
    this.connections.add(connection);
    socket.once('close', () => this.connections.delete(connection));
  }

  private encodeJob(job: Job): string {
    let line = this.encodedJobs.get(job);
    if (line === undefined) {
      line = encodeNotification({ method: 'mining.notify', params: job });
      this.encodedJobs.set(job, line);
    }
    return line;
  }
}
