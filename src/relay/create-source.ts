import { readFileSync } from 'node:fs';
import type { Logger } from '../log.js';
import { GbtSource } from '../sources/gbt-source.js';
import { StratumPool } from '../sources/stratum-pool.js';
import type { WorkSource } from '../sources/work-source.js';
import { BIP320_MASK } from '../work/version.js';
import type { RelayConfig } from './config.js';

/** The work source the config names: solo through a coin node, or a list of pools. */
export function createSource(config: RelayConfig, logger: Logger): WorkSource {
  const { source } = config;
  if (source.type === 'node') {
    const { node } = source;
    return new GbtSource(
      {
        rpcUrl: node.rpcUrl,
        auth:
          'rpcCookieFile' in node
            ? { cookieFile: node.rpcCookieFile }
            : { user: node.rpcUser, password: node.rpcPassword },
        payoutAddress: node.payoutAddress,
        coinbaseTag: node.coinbaseTag,
        longPoll: node.longPoll,
        pollIntervalMs: node.pollIntervalSeconds * 1000,
        algorithm: source.algorithm,
      },
      { logger: logger.child({ component: 'source' }) },
    );
  }
  return new StratumPool({
    pools: source.pools.map((p) => ({
      url: p.url,
      user: p.user,
      password: p.password,
      tls: {
        rejectUnauthorized: p.tlsRejectUnauthorized,
        ...(p.tlsCaFile ? { ca: readFileSync(p.tlsCaFile, 'utf8') } : {}),
      },
    })),
    algorithm: source.algorithm,
    requestTimeoutMs: source.requestTimeoutSeconds * 1000,
    primaryRetryMs: source.primaryRetrySeconds * 1000,
    versionRolling: source.versionRolling ? { mask: BIP320_MASK } : null,
    logger: logger.child({ component: 'source' }),
  });
}
