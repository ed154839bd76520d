import { buildConfigureResult, type ConfigureParams } from '../stratum/index.js';
import { negotiateMask } from '../work/version.js';

/**
 * The answer to a miner's mining.configure (BIP310). Only version rolling is offered: the
 * grant is the miner's requested mask ∩ the upstream's (docs/design.md §4.1), because the relay can
 * only forward shares whose version bits the upstream accepts. Every other extension the
 * miner names is answered `false`, which BIP310 defines as "not supported".
 *
 * min-bit-count is a hint in BIP310; the grant is made even when it has fewer bits, and the
 * miner decides whether it can work with it.
 */

export interface ConfigureAnswer {
  result: Record<string, unknown>;
  /** The mask granted; null when version rolling was not asked for or cannot be offered. */
  grantedMask: number | null;
  /**
   * What to register with the stratifier: the miner's request when rolling was granted (so a
   * later upstream mask change can be re-intersected with it), 0 otherwise (never roll).
   */
  versionMaskRequest: number;
}

export function answerConfigure(
  params: ConfigureParams,
  upstreamMask: number | null,
): ConfigureAnswer {
  // fromEntries defines own properties, so a hostile extension name like "__proto__" is inert.
  const refused = Object.fromEntries(params.extensions.map((name) => [name, false]));
  const request = params.versionRolling;
  if (request === null) return { result: refused, grantedMask: null, versionMaskRequest: 0 };
  const granted = upstreamMask === null ? 0 : negotiateMask(upstreamMask, request.mask);
  if (granted === 0) {
    return {
      result: { ...refused, ...buildConfigureResult({ versionRollingMask: null }) },
      grantedMask: null,
      versionMaskRequest: 0,
    };
  }
  return {
    result: { ...refused, ...buildConfigureResult({ versionRollingMask: granted }) },
    grantedMask: granted,
    versionMaskRequest: request.mask,
  };
}
