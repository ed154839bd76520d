import type { AddressInfo } from 'node:net';
import { type Logger, silentLogger } from '../log.js';
import { Stratifier } from '../relay/stratifier.js';
import { StratumConnector } from '../relay/stratum-connector.js';
import type { StratumLimits } from '../relay/stratum-miner-limits.js';
import { createPowHasher } from '../work/pow.js';
import { MIN_DIFFICULTY } from '../work/target.js';
import type { CircuitSource } from './circuit-source.js';

/**
 * `powbridge mine --stratum-listen`: standard Stratum V1 miners (cpuminer, cgminer, old
 * ASICs) mine through this client. It is the relay's own machinery pointed the other way: a
 * stratifier whose upstream is our circuit, and the relay's Stratum connector. Local miners
 * get slots of our extranonce2 and a difficulty at most the relay's; shares meeting the
 * relay's difficulty go up the circuit, so the relay credits this client and its wallet
 * collects the tickets.
 */

/**
 * The user's own miners take nobody's place, so the relay's donor deadlines do not apply: no
 * share deadline (a slow CPU at a high start difficulty, or an upstream pause, must not drop
 * them) and a minute to subscribe (cgminer probes and retries slowly at start-up).
 */
const LOCAL_MINER_LIMITS: Partial<StratumLimits> = {
  shareTimeoutMs: null,
  handshakeTimeoutMs: 60_000,
};

export interface StratumFront {
  readonly address: AddressInfo;
  close(): Promise<void>;
}

export async function startStratumFront(options: {
  source: CircuitSource;
  host: string;
  port: number;
  logger?: Logger;
  /** Seconds, for vardiff; injectable for tests. */
  now?: () => number;
}): Promise<StratumFront> {
  const logger = options.logger ?? silentLogger;
  const registered = options.source.registered;
  if (!registered)
    throw new Error('the circuit must be registered before the Stratum front starts');
  const algorithm = registered.algorithm;
  const stratifier = new Stratifier({
    source: options.source,
    algorithm,
    hasher: await createPowHasher(algorithm),
    // Local miners start at the relay's difficulty (the ceiling), or at the one they
    // suggest, and vardiff finds theirs.
    initialDifficulty: Number.POSITIVE_INFINITY,
    ticketDifficulty: 1, // credit is the relay's business, not ours
    vardiff: { minDifficulty: MIN_DIFFICULTY },
    ...(options.now ? { now: options.now } : {}),
    logger: logger.child({ component: 'front' }),
  });
  stratifier.start();
  const connector = new StratumConnector(stratifier, {
    limits: LOCAL_MINER_LIMITS,
    logger: logger.child({ component: 'front' }),
  });
  try {
    await connector.listen(options.host, options.port);
  } catch (err) {
    stratifier.stop();
    throw err;
  }
  const address = connector.address();
  if (!address) throw new Error('stratum front has no address');
  return {
    address,
    async close() {
      await connector.close();
      stratifier.stop();
    },
  };
}
